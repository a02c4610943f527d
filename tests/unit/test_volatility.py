import dataclasses
import itertools
import math
import random
from decimal import Decimal

import pytest

from deltakeeper.domain.volatility import (
    BETA_MAX,
    BETA_MIN,
    MIN_BETA_SAMPLES,
    EwmaBeta,
    EwmaDrift,
    EwmaVol,
    ewma_decay_for_bar,
    min_variance_hedge_ratio,
    residual_vol,
)

FIVE_MIN = 300
BARS_PER_YEAR = 365 * 288


def _correlated_paths(n: int, sigma_a: float, sigma_h: float, rho: float, seed: int):
    rng = random.Random(seed)
    pa, ph = 100.0, 100.0
    sa, sh = sigma_a / math.sqrt(BARS_PER_YEAR), sigma_h / math.sqrt(BARS_PER_YEAR)
    for _ in range(n):
        zh = rng.gauss(0, 1)
        za = rho * zh + math.sqrt(1 - rho * rho) * rng.gauss(0, 1)
        pa, ph = pa * math.exp(sa * za), ph * math.exp(sh * zh)
        yield pa, ph


def test_decay_for_daily_bar_is_riskmetrics():
    assert ewma_decay_for_bar(86_400) == pytest.approx(0.94)


def test_decay_for_five_minute_bars_keeps_the_daily_half_life():
    lam = ewma_decay_for_bar(FIVE_MIN)
    assert lam == pytest.approx(0.94 ** (1 / 288))
    assert lam**288 == pytest.approx(0.94)


def test_min_variance_hedge_matches_reference_example():
    assert min_variance_hedge_ratio(0.70, 0.50, 0.85) == pytest.approx(1.19)
    assert residual_vol(0.70, 0.85) == pytest.approx(0.3687, abs=1e-4)


def test_ewma_vol_is_unknown_until_a_first_return():
    vol = EwmaVol.for_bar(86_400).update(Decimal("100"))
    assert vol.annualised_vol() is None


def test_ewma_vol_seeds_with_first_squared_return():
    vol = EwmaVol.for_bar(86_400).update(Decimal("100")).update(Decimal("110"))
    assert vol.variance_per_bar() == pytest.approx(math.log(1.1) ** 2)
    assert vol.annualised_vol() == pytest.approx(abs(math.log(1.1)) * math.sqrt(365))


def test_ewma_vol_is_the_weight_normalised_average_of_squared_returns():
    prices = [100.0, 103.0, 99.0, 101.0, 108.0]
    vol = EwmaVol.for_bar(86_400)
    for p in prices:
        vol = vol.update(p)
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    weights = [0.06 * 0.94 ** (len(returns) - 1 - i) for i in range(len(returns))]
    expected = sum(w * r * r for w, r in zip(weights, returns, strict=True)) / sum(weights)
    assert vol.variance_per_bar() == pytest.approx(expected)


def test_ewma_vol_update_returns_a_new_value():
    start = EwmaVol.for_bar(FIVE_MIN)
    assert start.update(100.0) is not start
    assert start.last_price is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        start.decay = 0.5  # type: ignore[misc]


def test_ewma_vol_recovers_simulated_volatility():
    vol = EwmaVol.for_bar(FIVE_MIN)
    for pa, _ in _correlated_paths(20_000, 0.6, 0.5, 0.0, seed=7):
        vol = vol.update(pa)
    assert vol.annualised_vol() == pytest.approx(0.6, rel=0.05)


def test_ewma_beta_recovers_reference_hedge_ratio_from_simulated_returns():
    beta = EwmaBeta.for_bar(FIVE_MIN)
    for pa, ph in _correlated_paths(20_000, 0.70, 0.50, 0.85, seed=11):
        beta = beta.update(pa, ph)
    assert beta.beta == pytest.approx(1.19, abs=0.05)
    assert beta.r_squared == pytest.approx(0.85**2, abs=0.03)
    assert beta.residual_vol == pytest.approx(0.3687, abs=0.02)


def test_ewma_beta_of_a_perfect_proxy_has_no_residual():
    beta = EwmaBeta.for_bar(86_400)
    for ph in (100.0, 104.0, 97.0, 99.0):
        beta = beta.update(ph**2 / 100, ph)  # log return of A is twice H's
    assert beta.beta == pytest.approx(2.0)
    assert beta.r_squared == pytest.approx(1.0)
    assert beta.residual_vol == pytest.approx(0.0, abs=1e-6)


def test_ewma_beta_is_unknown_until_the_hedge_moves():
    beta = EwmaBeta.for_bar(86_400).update(100.0, 50.0).update(101.0, 50.0)
    assert beta.beta is None
    assert beta.residual_vol is None


def test_drift_rate_is_exact_for_steady_drift_at_irregular_times():
    rate_coin2_per_sec = 1e-4
    drift = EwmaDrift()
    t, delta = 0.0, 0.0
    drift = drift.update(delta, t)
    for sign, dt in zip((1, -1, 1, 1, -1), (60.0, 3_600.0, 5.0, 86_400.0, 600.0), strict=True):
        t += dt
        delta += sign * math.sqrt(rate_coin2_per_sec * dt)
        drift = drift.update(Decimal(repr(delta)), t)
    assert drift.drift_var_coin2_per_year() == pytest.approx(rate_coin2_per_sec * 365 * 86_400)


def test_drift_rate_recovers_a_simulated_random_walk():
    s_d2_per_year = 50.0
    rng = random.Random(3)
    drift = EwmaDrift().update(0.0, 0.0)
    t, delta = 0.0, 0.0
    for _ in range(20_000):
        dt = rng.expovariate(1 / 60)
        t += dt
        delta += rng.gauss(0, math.sqrt(s_d2_per_year * dt / (365 * 86_400)))
        drift = drift.update(delta, t)
    assert drift.drift_var_coin2_per_year() == pytest.approx(s_d2_per_year, rel=0.1)


def test_drift_rate_rejects_time_going_backwards():
    drift = EwmaDrift().update(1.0, 100.0)
    with pytest.raises(ValueError, match="backwards"):
        drift.update(2.0, 50.0)


def _beta_after(moves: list[tuple[float, float]]) -> EwmaBeta:
    """An EWMA beta fed one (asset return, hedge return) per bar, prices starting at 100."""
    beta = EwmaBeta.for_bar(60).update(100.0, 100.0)
    pa = ph = 100.0
    for ra, rh in moves:
        pa, ph = pa * math.exp(ra), ph * math.exp(rh)
        beta = beta.update(pa, ph)
    return beta


def test_the_hedge_ratio_is_unknown_before_the_minimum_number_of_returns() -> None:
    # the asset jumps while the hedge barely moves: the plain estimate is 36
    few = _beta_after([(0.036, 0.001), (-0.036, -0.001)])
    assert few.beta == pytest.approx(36)
    assert few.samples == 2 and few.hedge_ratio is None
    moves = [(0.015 * (-1) ** k, 0.01 * (-1) ** k) for k in range(MIN_BETA_SAMPLES)]
    assert _beta_after(moves[:-1]).hedge_ratio is None
    assert _beta_after(moves).hedge_ratio == pytest.approx(1.5)


def test_the_hedge_ratio_is_clamped_to_a_sane_range_and_unknown_when_not_positive() -> None:
    n = MIN_BETA_SAMPLES
    assert _beta_after([(0.036 * (-1) ** k, 0.001 * (-1) ** k) for k in range(n)]).hedge_ratio == BETA_MAX
    assert _beta_after([(0.001 * (-1) ** k, 0.036 * (-1) ** k) for k in range(n)]).hedge_ratio == BETA_MIN
    inverse = _beta_after([(-0.01 * (-1) ** k, 0.01 * (-1) ** k) for k in range(n)])
    assert inverse.beta == pytest.approx(-1) and inverse.hedge_ratio is None
    assert (BETA_MIN, BETA_MAX) == (0.2, 5.0)
