"""The account's margin mode and the venue's own maintenance margin ratio (issue 13), as the venue reports
them, beside the bot's estimate (`domain.margin`).

`maintenance_ratio` is one convention for every venue: maintenance margin / equity, a fraction (0 with
nothing at risk, 1 at liquidation), so that `1 - maintenance_ratio` reads as the bot's headroom
`(equity - MM) / equity` (the console shows it so). Venues that publish the inverse (Binance `uniMMR`,
equity / MM) are inverted by the adapter; `ratio_source` names the field(s) it came from.

A mode or ratio that could not be read is UNKNOWN / None with the reason in `detail`: never "standard".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

ZERO = Decimal(0)


class AccountMode(Enum):
    UNKNOWN = "unknown"
    """Not read (the read failed, or the venue's answer does not say)."""
    STANDARD = "standard"
    """Margin per product and settlement currency (classic / cross or isolated): spot is not collateral."""
    UNIFIED = "unified"
    """One margin pool across spot and derivatives, each position margined on its own (Bybit UTA regular
    margin, OKX multi-currency margin)."""
    PORTFOLIO = "portfolio"
    """One pool margined on the portfolio's risk, hedges offsetting (Bybit/OKX portfolio margin,
    Binance Portfolio Margin)."""


@dataclass(frozen=True, slots=True)
class VenueMargin:
    """The venue's account margin view at `as_of`. `detail`: what the mode was read from (the venue's
    own fields), or why it is unknown."""

    mode: AccountMode
    as_of: datetime
    maintenance_ratio: Decimal | None = None
    ratio_source: str = ""
    detail: str = ""

    @property
    def pooled(self) -> bool:
        """Spot and derivatives margined in one pool (unified or portfolio margin)."""
        return self.mode in (AccountMode.UNIFIED, AccountMode.PORTFOLIO)


def unknown_margin(as_of: datetime, reason: str) -> VenueMargin:
    return VenueMargin(AccountMode.UNKNOWN, as_of, detail=reason)


def ratio_of(maintenance: Decimal, equity: Decimal) -> Decimal | None:
    """MM / equity; None without equity (nothing to measure against), 1 (liquidation) for none left."""
    if equity <= 0:
        return None if maintenance <= 0 else Decimal(1)
    return maintenance / equity


def inverse_ratio(equity_over_maintenance: Decimal) -> Decimal | None:
    """MM / equity from a venue's equity / MM (Binance `uniMMR`); None where it is not positive (no
    maintenance margin: the venue shows 0 or a huge number)."""
    return None if equity_over_maintenance <= 0 else 1 / equity_over_maintenance


def worst_ratio(pools: Mapping[str, tuple[Decimal, Decimal]]) -> tuple[str, Decimal] | None:
    """Of several margin pools {name: (maintenance margin, equity)} margined apart (settlement currencies,
    currencies of a single-currency account), the one nearest liquidation and its ratio; None without a
    pool that holds maintenance margin."""
    ratios = {name: r for name, (mm, equity) in pools.items()
              if mm > 0 and (r := ratio_of(mm, equity)) is not None}
    if not ratios:
        return None
    name = max(sorted(ratios), key=lambda n: ratios[n])
    return name, ratios[name]
