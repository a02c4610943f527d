"""An amount of some currency in USD: the one conversion behind the metrics, the daily summary, the status
and the PnL report."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from deltakeeper.domain.instruments import is_stable

PriceUsd = Callable[[str], Decimal | None]
"""A coin's USD price, None when unknown."""


def to_usd(amount: Decimal, currency: str, price_usd: PriceUsd) -> Decimal | None:
    """`amount` of `currency` in USD: a stablecoin as it is, a coin at its price; None when the coin has no
    price (never 0: an unpriced amount is left out of USD totals, not counted as nothing)."""
    if is_stable(currency):
        return amount
    price = price_usd(currency)
    return None if price is None else amount * price
