"""Tiered maintenance margin and the liquidation price of linear perps (REFERENCE 3.1): the one
implementation of an exchange's maintenance margin table, used by the loop's cross margin, the simulated
exchange and `deltakeeper margin`. `liquidation_price_usd` is the one bracket solve behind every future's
estimated liquidation price (`domain.margin.liquidation_price`, which also solves inverse contracts with
it, in the reciprocal price).

Exact `Decimal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class MarginTier:
    """One notional bracket `[floor_usd, cap_usd)` of an exchange's maintenance margin table."""

    floor_usd: Decimal
    cap_usd: Decimal
    mmr: Decimal


DEFAULT_TIERS_USD = tuple(
    MarginTier(Decimal(floor), Decimal(cap), Decimal(mmr))
    for floor, cap, mmr in [
        (0, 50_000, "0.004"),
        (50_000, 250_000, "0.005"),
        (250_000, 1_000_000, "0.01"),
        (1_000_000, 10_000_000, "0.025"),
        (10_000_000, 20_000_000, "0.05"),
        (20_000_000, 50_000_000, "0.10"),
    ]
)
"""REFERENCE 3.1: Binance BTCUSDT maintenance margin tiers of 2021-03-18, on the USD notional."""


def cumulative_amounts_usd(tiers: Sequence[MarginTier]) -> list[Decimal]:
    """`cum_k = cum_{k-1} + floor_k (mmr_k - mmr_{k-1})`, `cum_0 = 0`: the amounts that make
    `notional x mmr - cum` continuous across brackets. Tiers must be ascending and contiguous."""
    cums = [ZERO]
    for prev, tier in pairwise(tiers):
        if tier.floor_usd != prev.cap_usd:
            raise ValueError(f"tier floor {tier.floor_usd} does not start at the previous cap {prev.cap_usd}")
        cums.append(cums[-1] + tier.floor_usd * (tier.mmr - prev.mmr))
    return cums


def tier_bracket(notional: Decimal, tiers: Sequence[MarginTier]) -> tuple[Decimal, Decimal]:
    """`(mmr_k, cum_k)` of the bracket k that holds the (non-negative) notional; above the last cap, the
    last bracket's. The cumulative amount is built on the way (this runs on every simulated quote)."""
    cum = ZERO
    previous: MarginTier | None = None
    for tier in tiers:
        if previous is not None:
            cum += tier.floor_usd * (tier.mmr - previous.mmr)
        if notional < tier.cap_usd:
            break
        previous = tier
    return tier.mmr, cum


def maintenance_margin_usd(notional_usd: Decimal, tiers: Sequence[MarginTier]) -> Decimal:
    """`MM = |notional| x mmr_k - cum_k` in the bracket k that holds the absolute notional, the last
    tier's rate going on above its cap."""
    notional = abs(notional_usd)
    rate, cum = tier_bracket(notional, tiers)
    return notional * rate - cum


def liquidation_price_usd(
    size_coin: Decimal, entry_usd: Decimal, collateral_usd: Decimal, tiers: Sequence[MarginTier]
) -> Decimal | None:
    """The price S at which a linear position's equity falls to its maintenance margin.

    Equity is `collateral + q (S - entry)` and, in bracket k, `MM = |q| S mmr_k - cum_k`; both are
    linear in S, so solving `equity = MM` inside bracket k gives

        S_k = (q entry - collateral - cum_k) / (q - |q| mmr_k).

    `equity - MM` is strictly monotone in S (mmr < 1), so exactly one S_k has its notional `|q| S_k`
    inside its own bracket: that is the liquidation price. Isolated margin: `collateral_usd` is the
    margin posted to the position. Cross margin: the account equity available to it (wallet equity
    minus the other positions' maintenance margin). None for a flat position, a long whose collateral
    outlasts a price of zero, or a short whose notional runs past the table first.
    """
    if size_coin == 0:
        return None
    for tier, cum in zip(tiers, cumulative_amounts_usd(tiers), strict=True):
        price = (size_coin * entry_usd - collateral_usd - cum) / (size_coin - abs(size_coin) * tier.mmr)
        if price > 0 and tier.floor_usd <= abs(size_coin) * price < tier.cap_usd:
            return price
    return None


def liquidation_distance(
    size_coin: Decimal,
    entry_usd: Decimal,
    collateral_usd: Decimal,
    tiers: Sequence[MarginTier],
    mark_usd: Decimal,
) -> Decimal | None:
    """Relative move of the mark that reaches the liquidation price (+0.17: a 17% rally)."""
    price = liquidation_price_usd(size_coin, entry_usd, collateral_usd, tiers)
    return None if price is None else price / mark_usd - 1
