import math
import random
from decimal import Decimal

import pytest

from deltakeeper.domain.bands import (
    RebalanceTo,
    cost_aware_half_width_coin,
    cube_root_half_width_coin,
    gamma_drift_var_coin2_per_year,
    mean_square_deviation_coin2,
    traded_coin_per_year,
    trades_per_year_to_target,
    whalley_wilmott_half_width_coin,
)

# REFERENCE 4: short 100 ATM 30-day calls, S = 60,000, c = 5 bp, ra = 1e-4 per USD
G_BOOK, S, C, RA = 3.85112e-3, 60_000.0, 5e-4, 1e-4


def test_whalley_wilmott_worked_example():
    assert whalley_wilmott_half_width_coin(C, S, G_BOOK, RA) == pytest.approx(1.8828, abs=1e-4)


@pytest.mark.parametrize("vol", [0.3, 0.6, 1.2])
def test_cube_root_band_matches_whalley_wilmott_when_drift_comes_from_gamma(vol):
    s_d2 = gamma_drift_var_coin2_per_year(G_BOOK, vol, S)
    w = cube_root_half_width_coin(C * S, s_d2, RA * vol**2 * S**2 / 2)
    assert w == pytest.approx(whalley_wilmott_half_width_coin(C, S, G_BOOK, RA))


def test_cost_aware_band_builds_the_worked_example():
    s_d2 = gamma_drift_var_coin2_per_year(G_BOOK, 0.6, S)
    w = cost_aware_half_width_coin(C, S, 0.6, s_d2, RA, min_coin=Decimal("0.001"), max_coin=Decimal("10"))
    assert float(w) == pytest.approx(1.8828, abs=1e-4)


def test_band_grows_as_cube_root_of_cost_and_two_thirds_power_of_gamma():
    base = whalley_wilmott_half_width_coin(C, S, G_BOOK, RA)
    assert whalley_wilmott_half_width_coin(8 * C, S, G_BOOK, RA) == pytest.approx(2 * base)
    assert whalley_wilmott_half_width_coin(C, S, 8 * G_BOOK, RA) == pytest.approx(4 * base)
    assert whalley_wilmott_half_width_coin(C, S, G_BOOK, 8 * RA) == pytest.approx(base / 2)


def test_cost_aware_band_is_clamped_to_lot_step_and_hard_maximum():
    lo, hi = Decimal("0.001"), Decimal("5")
    assert cost_aware_half_width_coin(C, S, 0.6, 1e-12, RA, lo, hi) == lo
    assert cost_aware_half_width_coin(C, S, 0.6, 1e6, RA, lo, hi) == hi
    assert cost_aware_half_width_coin(C, S, 0.0, 1.0, RA, lo, hi) == hi  # no holding cost


def test_cube_root_band_minimises_holding_plus_trading_cost():
    k, s_d2, a = C * S, 40.0, RA * 0.6**2 * S**2 / 2
    w_star = cube_root_half_width_coin(k, s_d2, a)

    def cost_per_year(w: float) -> float:
        return a * mean_square_deviation_coin2(w, "edge") + k * traded_coin_per_year(s_d2, w, "edge")

    assert cost_per_year(w_star) < min(cost_per_year(w_star * 0.98), cost_per_year(w_star * 1.02))


def test_band_statistics_in_closed_form():
    assert mean_square_deviation_coin2(3.0, "edge") == pytest.approx(3.0)
    assert mean_square_deviation_coin2(3.0, "target") == pytest.approx(1.5)
    assert traded_coin_per_year(10.0, 2.0, "edge") == pytest.approx(2.5)
    assert traded_coin_per_year(10.0, 2.0, "target") == pytest.approx(5.0)
    assert trades_per_year_to_target(10.0, 2.0) == pytest.approx(2.5)


def _simulate(rebalance_to: RebalanceTo, w: float, s_d2: float, years: float, steps: int, seed: int):
    """Random walk of the deviation, traded back at the band: (mean square, coins traded/yr, trades/yr)."""
    rng = random.Random(seed)
    step_sd = math.sqrt(s_d2 * years / steps)
    x = sq = traded = 0.0
    trades = 0
    for _ in range(steps):
        x += rng.gauss(0, step_sd)
        if abs(x) > w:
            target = math.copysign(w, x) if rebalance_to == "edge" else 0.0
            traded += abs(x - target)
            trades += 1
            x = target
        sq += x * x
    return sq / steps, traded / years, trades / years


@pytest.mark.parametrize("rebalance_to", ["edge", "target"])
def test_band_statistics_match_a_seeded_simulation(rebalance_to: RebalanceTo):
    # ~400 independent excursions: about 5% noise, well inside 15% and far from the factor 2 between modes
    w, s_d2, years = 0.1, 1.0, 4.0
    mean_sq, traded, trades = _simulate(rebalance_to, w, s_d2, years, steps=400_000, seed=5)
    assert mean_sq == pytest.approx(mean_square_deviation_coin2(w, rebalance_to), rel=0.15)
    assert traded == pytest.approx(traded_coin_per_year(s_d2, w, rebalance_to), rel=0.15)
    if rebalance_to == "target":
        assert trades == pytest.approx(trades_per_year_to_target(s_d2, w), rel=0.15)
