"""Cost-aware no-trade bands: the cube-root law and what a band implies (REFERENCE.md section 4).

Band maths is in floats; the band handed to the policy is a `Decimal` number of coins. Time is in years,
`x` is the deviation of delta from target in coins, `w` the band half-width in coins.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

RebalanceTo = Literal["edge", "target"]


def cube_root_half_width_coin(
    cost_per_coin_usd: float, drift_var_coin2_per_year: float, holding_cost_usd_per_coin2_year: float
) -> float:
    """w* = (3 k sD^2 / (4 a))^(1/3).

    Trading costs k per coin, holding a deviation x costs a x^2 per year, the ideal hedge drifts with
    variance sD^2 per year: the band's edge balances the two.
    """
    if cost_per_coin_usd < 0 or drift_var_coin2_per_year < 0:
        raise ValueError("cost and drift variance must be non-negative")
    if holding_cost_usd_per_coin2_year <= 0:
        raise ValueError("holding cost must be positive")
    ratio = 3 * cost_per_coin_usd * drift_var_coin2_per_year / (4 * holding_cost_usd_per_coin2_year)
    return ratio ** (1 / 3)


def whalley_wilmott_half_width_coin(
    cost_rate: float, price_usd: float, gamma_per_usd: float, risk_aversion_per_usd: float
) -> float:
    """Whalley-Wilmott (1997): w* = (3 c S G^2 / (2 ra))^(1/3)."""
    if risk_aversion_per_usd <= 0:
        raise ValueError("risk aversion must be positive")
    return (3 * cost_rate * price_usd * gamma_per_usd**2 / (2 * risk_aversion_per_usd)) ** (1 / 3)


def gamma_drift_var_coin2_per_year(gamma_per_usd: float, vol_per_sqrt_year: float, price_usd: float) -> float:
    """Drift variance of an option book's delta: sD^2 = (G vol S)^2."""
    return (gamma_per_usd * vol_per_sqrt_year * price_usd) ** 2


def cost_aware_half_width_coin(
    cost_rate: float,
    price_usd: float,
    vol_per_sqrt_year: float,
    drift_var_coin2_per_year: float,
    risk_aversion_per_usd: float,
    min_coin: Decimal,
    max_coin: Decimal,
) -> Decimal:
    """Cube-root band with k = c S and a = ra vol^2 S^2 / 2, clamped to [min_coin, max_coin].

    `min_coin` is typically the lot step, `max_coin` the hard maximum deviation. With no holding cost
    (zero vol or risk aversion) only the hard maximum limits the deviation.
    """
    if min_coin > max_coin:
        raise ValueError(f"min_coin {min_coin} exceeds max_coin {max_coin}")
    holding = risk_aversion_per_usd * vol_per_sqrt_year**2 * price_usd**2 / 2
    if holding <= 0:
        return max_coin
    w = cube_root_half_width_coin(cost_rate * price_usd, drift_var_coin2_per_year, holding)
    return min(max(Decimal(repr(w)), min_coin), max_coin)


def mean_square_deviation_coin2(half_width_coin: float, rebalance_to: RebalanceTo) -> float:
    """E[x^2]: uniform on [-w, w] (w^2/3) trading to the edge; triangular (w^2/6) trading to the target."""
    return half_width_coin**2 / (3 if rebalance_to == "edge" else 6)


def traded_coin_per_year(
    drift_var_coin2_per_year: float, half_width_coin: float, rebalance_to: RebalanceTo
) -> float:
    """Volume traded to hold the band: sD^2 / (2w) to the edge, sD^2 / w to the target (twice as much)."""
    return drift_var_coin2_per_year / (2 * half_width_coin if rebalance_to == "edge" else half_width_coin)


def trades_per_year_to_target(drift_var_coin2_per_year: float, half_width_coin: float) -> float:
    """Trading to the target, each trade is w coins after a mean w^2 / sD^2 years: sD^2 / w^2 a year."""
    return drift_var_coin2_per_year / half_width_coin**2
