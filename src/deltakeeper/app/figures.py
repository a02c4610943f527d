"""How computed Decimals read in log lines, alerts and the decision journal's details."""

from __future__ import annotations

from decimal import Decimal

LOG_DIGITS = 6
"""Significant digits of a computed figure (delta, band, rate) in a log line; the journal keeps it exact."""


def figure(value: Decimal, digits: int = LOG_DIGITS) -> str:
    """A computed Decimal for a log line: `digits` significant digits (every digit before the point is
    kept), no trailing zeros, plain notation: `85.79916684959306` -> `85.7992`."""
    if not value:
        return "0"
    exponent = min(value.adjusted() - digits + 1, 0)
    rounded = value.quantize(Decimal(1).scaleb(exponent)).normalize()
    return format(rounded if rounded else Decimal(0), "f")


def short(value: Decimal, places: int = 4) -> str:
    """A Decimal for people: at most `places` decimals, no trailing zeros, plain notation."""
    rounded = round(value, places).normalize()
    return format(rounded if rounded != 0 else Decimal(0), "f")


def join(*parts: str) -> str:
    """Details for the decision journal, space-separated, empty ones left out."""
    return " ".join(filter(None, parts))
