"""How computed Decimals read in log lines, alerts and the decision journal's details."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

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


CENT = Decimal("0.01")
COIN_STEP = Decimal("1e-8")
RATIO_PLACES = 4


def usd(value: Decimal | None) -> Decimal | None:
    """USD to the cent."""
    return None if value is None else value.quantize(CENT, ROUND_HALF_EVEN)


def coins(value: Decimal | None, step: Decimal = COIN_STEP) -> Decimal | None:
    """An amount of coin or contracts to `step` (8 places unless the instrument's lot step is given)."""
    if value is None or not value.is_finite():
        return value
    return value.quantize(step.normalize() if step < 1 else Decimal(1), ROUND_HALF_EVEN)


def ratio(value: float | Decimal | None) -> float | None:
    """A ratio (a deviation in bands, a headroom) to 4 places; infinite ones as they are."""
    if value is None:
        return None
    number = float(value)
    return round(number, RATIO_PLACES) if math.isfinite(number) else number


def sum_known(values: Iterable[Decimal | None]) -> Decimal | None:
    """The sum of the values, None when any is unknown (a sum with a hole is no answer)."""
    total = Decimal(0)
    for value in values:
        if value is None:
            return None
        total += value
    return total
