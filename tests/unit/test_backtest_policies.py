"""The policies a backtest replays (timer, fixed band with the skip rule, cost-aware band) and the exposure
models that move the holdings (static, constant-product pool, recorded inventory)."""

import math
from decimal import Decimal as D

import pytest

from deltakeeper.domain.bands import cost_aware_half_width_coin
from deltakeeper.domain.costs import risk_reduction_usd
from deltakeeper.domain.decide_policies import (
    WARMUP_RISK_SAMPLES,
    CostAwarePolicy,
    FixedBandPolicy,
    MarketContext,
    RiskModel,
    SkipRule,
    TimerPolicy,
    cost_rate,
)
from deltakeeper.domain.exposure_models import ConstantProductPool, InventoryPath, StaticHoldings
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Side
from deltakeeper.domain.policy import AssetPolicy, AssetView, Band, BandUnit, RebalanceTo
from deltakeeper.domain.volatility import SECONDS_PER_YEAR, EwmaDrift, EwmaVol

PERP = Instrument(
    "BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", lot_step_contracts=D("0.001"),
    min_contracts=D("0.001"), taker_fee_rate=D("0.0005"),
)
PRICE = D(50_000)
OWN_BAND = Band(BandUnit.COIN, D(1))


def view(delta: str, gross: str = "20") -> AssetView:
    return AssetView("BTC", D(delta), D(gross), PRICE, PERP, PRICE)


def asset_policy(band_coin: str = "1", to: RebalanceTo = RebalanceTo.TARGET) -> AssetPolicy:
    return AssetPolicy("BTC", PERP.symbol, Band(BandUnit.COIN, D(band_coin)), D(0), to)


def risk_model(vol: float | None = 0.5, drift_var: float | None = 4.0) -> RiskModel:
    """A risk model with exactly this annual vol and drift variance (coins^2 a year)."""
    ewma = EwmaVol(decay=0.9, bar_secs=SECONDS_PER_YEAR)
    if vol is not None:  # one year bars: the per-bar variance is the annual one
        ewma = EwmaVol(0.9, SECONDS_PER_YEAR, last_price=1.0, weighted_sq=vol * vol, weight=1.0)
    drift = EwmaDrift()
    if drift_var is not None:
        drift = EwmaDrift(last_delta_coin=0.0, last_t_secs=0.0, weighted_sq_coin2=drift_var,
                          weighted_time_secs=float(SECONDS_PER_YEAR))
    return RiskModel(ewma, drift, returns=WARMUP_RISK_SAMPLES)


def ctx(now_secs: float = 0.0, timer_slot: int | None = None, risk: RiskModel | None = None) -> MarketContext:
    return MarketContext(now_secs, D(2), risk or risk_model(), timer_slot)


def signed(decision) -> D:
    assert decision.intent is not None
    return decision.intent.amount_contracts * decision.intent.side.sign


# -- exposure models ------------------------------------------------------------------------------------


def test_pool_holdings_halve_when_the_price_quadruples():
    pool = ConstantProductPool.from_value(1_000_000, 100.0)
    assert pool.holdings_coin(100.0) == D(5000)
    assert pool.holdings_coin(400.0) == D(2500)
    assert pool.holdings_coin(25.0) == D(10000)


def test_pool_keeps_x_times_y_constant_and_is_worth_two_root_k_s():
    pool = ConstantProductPool.from_value(1_000_000, 100.0)
    for price in (37.5, 100.0, 812.0):
        x = float(pool.holdings_coin(price))
        assert x * pool.usd_side(price) == pytest.approx(pool.k, rel=1e-9)
        assert x * price + pool.usd_side(price) == pytest.approx(pool.value_usd(price), rel=1e-9)
    assert pool.value_usd(100.0) == pytest.approx(1_000_000)
    assert pool.gamma_coin_per_usd(100.0) == pytest.approx(-5000 / 200)


def test_pool_refuses_a_non_positive_value_or_price():
    with pytest.raises(ValueError):
        ConstantProductPool.from_value(0, 100.0)
    with pytest.raises(ValueError):
        ConstantProductPool.from_value(1_000, -1.0)


def test_static_holdings_do_not_move():
    held = StaticHoldings(D("3.5"))
    assert held.holdings_coin(1.0, 0.0) == held.holdings_coin(9e9, 1e9) == D("3.5")


def test_inventory_path_is_a_step_function_of_time_and_zero_before_its_first_record():
    path = InventoryPath.from_points([(200.0, D(5)), (100.0, D(2)), (200.0, D(7))])
    assert path.holdings_coin(1.0, 99.0) == 0
    assert path.holdings_coin(1.0, 100.0) == 2
    assert path.holdings_coin(1.0, 199.9) == 2
    assert path.holdings_coin(1.0, 200.0) == 7  # of equal times, the last record wins
    assert path.holdings_coin(1.0, 1e12) == 7


# -- timer ----------------------------------------------------------------------------------------------


def test_timer_trades_to_target_when_due_whatever_the_band():
    timer = TimerPolicy(3600)
    # a deviation of 0.2 BTC is well inside the asset's 1 BTC band (trading to the edge, even)
    outcome = timer.decide(view("0.2"), asset_policy("1", RebalanceTo.EDGE), ctx(now_secs=7200.0))
    assert signed(outcome.decision) == D("-0.2")
    assert outcome.timer_slot == 2


def test_timer_waits_until_the_next_interval_then_trades_once():
    timer = TimerPolicy(3600)
    waiting = timer.decide(view("3"), asset_policy(), ctx(now_secs=7200.0 + 3599, timer_slot=2))
    assert waiting.decision.intent is None
    assert waiting.decision.reason == "timer_not_due"
    assert waiting.timer_slot == 2
    fired = timer.decide(view("3"), asset_policy(), ctx(now_secs=3 * 3600.0, timer_slot=2))
    assert signed(fired.decision) == D(-3)
    assert fired.timer_slot == 3


def test_timer_due_with_nothing_to_trade_says_why_and_uses_up_its_slot():
    outcome = TimerPolicy(3600).decide(view("0.0001"), asset_policy(), ctx(now_secs=0.0))
    assert outcome.decision.intent is None
    assert outcome.decision.reason == "rounds_to_zero"
    assert outcome.timer_slot == 0


# -- fixed band and the skip rule ----------------------------------------------------------------------


def test_fixed_band_without_skip_rule_is_policy_decide():
    outcome = FixedBandPolicy().decide(view("1.5"), asset_policy("1"), ctx())
    assert signed(outcome.decision) == D("-1.5")
    assert FixedBandPolicy().decide(view("0.5"), asset_policy("1"), ctx()).decision.reason == "inside_band"


def skip_rule(ra: float = 1e-5, horizon_secs: float = 86_400.0) -> SkipRule:
    return SkipRule(risk_aversion_per_usd=ra, horizon_secs=horizon_secs)


def test_skip_rule_skips_a_trade_that_costs_more_than_the_risk_it_removes_and_says_both_numbers():
    # x 1.5 BTC -> 0 at 50,000, vol 50%, ra 1e-5, one day: removes 1e-5/2 x 2.25 x 2.5e9 x 0.25 / 365 = 19.26
    # USD of risk; costs (5 bp fee + 1 bp half spread) x 1.5 x 50,000 = 45 USD
    outcome = FixedBandPolicy(skip_rule()).decide(view("1.5"), asset_policy("1"), ctx())
    assert outcome.decision.intent is None
    assert outcome.decision.reason == "cost_exceeds_risk"
    assert outcome.detail == "cost_usd=45.00 risk_removed_usd=19.26"
    assert outcome.decision.band_coin == D(1)


def test_skip_rule_lets_through_a_trade_whose_removed_risk_exceeds_its_cost():
    # x 4 BTC -> 0: removes 1e-5/2 x 16 x 2.5e9 x 0.25 / 365 = 136.99 USD; costs 0.0006 x 200,000 = 120 USD
    outcome = FixedBandPolicy(skip_rule()).decide(view("4"), asset_policy("1"), ctx())
    assert signed(outcome.decision) == D(-4)
    assert outcome.detail == "cost_usd=120.00 risk_removed_usd=136.99"
    expected = risk_reduction_usd(D(4), D(0), PRICE, 0.5, 86_400 / SECONDS_PER_YEAR, 1e-5)
    assert expected.quantize(D("0.01")) == D("136.99")


def test_skip_rule_counts_risk_removed_to_the_band_edge_only():
    # trading to the edge leaves 1 BTC: removes (16 - 1) / 16 of the risk above for 3/4 of the cost
    outcome = FixedBandPolicy(skip_rule()).decide(view("4"), asset_policy("1", RebalanceTo.EDGE), ctx())
    assert signed(outcome.decision) == D(-3)
    assert outcome.detail == "cost_usd=90.00 risk_removed_usd=128.42"


def test_skip_rule_cannot_judge_before_the_first_return():
    no_vol = ctx(risk=risk_model(vol=None))
    outcome = FixedBandPolicy(skip_rule()).decide(view("1.5"), asset_policy("1"), no_vol)
    assert signed(outcome.decision) == D("-1.5")
    assert outcome.detail == "skip_rule=no_volatility_yet"


# -- cost-aware band ------------------------------------------------------------------------------------


def cost_aware(ra: float = 1e-5, max_pct: str = "10") -> CostAwarePolicy:
    return CostAwarePolicy(risk_aversion_per_usd=ra, max_deviation=Band(BandUnit.PCT, D(max_pct)))


def test_cost_aware_band_is_the_cube_root_law_of_fee_half_spread_vol_and_drift():
    rate = cost_rate(PERP, D(2), D(0))
    assert rate == D("0.0006")
    band, detail = cost_aware().band_coin(view("0"), ctx(), OWN_BAND)
    # w* = (3 c S sD^2 / (2 ra vol^2 S^2))^(1/3) = (3 x 0.0006 x 4 / (2 x 1e-5 x 0.25 x 50,000))^(1/3)
    assert float(band) == pytest.approx((3 * 0.0006 * 4 / (2 * 1e-5 * 0.25 * 50_000)) ** (1 / 3))
    assert band == cost_aware_half_width_coin(0.0006, 50_000.0, 0.5, 4.0, 1e-5, D("0.001"), D(2))
    assert "cost_rate=0.0006" in detail and "vol=0.5000" in detail and "drift_var_coin2_per_year=4" in detail


def test_cost_aware_band_narrows_with_risk_aversion_and_widens_with_drift():
    narrow, _ = cost_aware(ra=1e-3).band_coin(view("0"), ctx(), OWN_BAND)
    wide, _ = cost_aware(ra=1e-5).band_coin(view("0"), ctx(), OWN_BAND)
    faster, _ = cost_aware(ra=1e-5).band_coin(view("0"), ctx(risk=risk_model(drift_var=32.0)), OWN_BAND)
    assert narrow < wide < faster
    assert float(wide / narrow) == pytest.approx(100 ** (1 / 3))
    assert float(faster / wide) == pytest.approx(2.0)


def test_cost_aware_trades_outside_its_band_and_holds_inside():
    band, _ = cost_aware().band_coin(view("0"), ctx(), OWN_BAND)  # 0.7114 BTC
    inside = cost_aware().decide(view(str(band - D("0.01"))), asset_policy(), ctx())
    assert inside.decision.intent is None and inside.decision.reason == "inside_band"
    outside = cost_aware().decide(view("0.8"), asset_policy(), ctx())
    assert signed(outside.decision) == D("-0.8")
    assert outside.decision.band_coin == band
    assert outside.detail.startswith("cost_rate=0.0006 ")


def test_hard_maximum_deviation_always_forces_a_trade():
    # with ra 1e-9 the cube-root band would be 71 BTC; the hard maximum, 10% of 20 BTC gross, is 2 BTC
    policy = cost_aware(ra=1e-9)
    band, detail = policy.band_coin(view("0"), ctx(), OWN_BAND)
    assert band == D(2)
    assert detail.endswith("band=max_deviation")
    outcome = policy.decide(view("2.1"), asset_policy(), ctx())
    assert signed(outcome.decision) == D("-2.1")
    assert outcome.decision.intent is not None and outcome.decision.intent.side is Side.SELL


def test_cost_aware_band_is_the_assets_own_band_until_the_risk_model_has_data():
    band, detail = cost_aware().band_coin(view("0"), ctx(risk=risk_model(drift_var=None)), OWN_BAND)
    assert band == D(1)
    assert detail == f"warming_up returns={WARMUP_RISK_SAMPLES}/{WARMUP_RISK_SAMPLES} drift=0 band=own"


def warming_model(returns: int, exposure_moves: bool = False) -> RiskModel:
    """A 5-minute risk model fed `returns` + 1 bars: the price moves, the exposure only if asked."""
    model = RiskModel.for_bar(300.0)
    for i in range(returns + 1):
        model = model.observe(100.0 + (i % 2), D(10 + (i if exposure_moves else 0)), 300.0 * i)
    return model


def test_cost_aware_never_trades_on_the_lot_step_band_of_a_risk_model_that_has_seen_one_bar():
    # one return and one unchanged interval: measured drift 0, so the cube-root band would be one lot step
    model = warming_model(1)
    assert model.drift_var_coin2_per_year == 0 and model.vol_per_sqrt_year
    outcome = cost_aware().decide(view("0.5"), asset_policy("1"), ctx(risk=model))
    assert outcome.decision.intent is None and outcome.decision.reason == "inside_band"
    assert outcome.decision.band_coin == D(1)
    beyond = cost_aware().decide(view("1.5"), asset_policy("1", RebalanceTo.EDGE), ctx(risk=model))
    assert signed(beyond.decision) == D("-0.5")  # the asset's own band, to its edge
    assert beyond.detail == f"warming_up returns=1/{WARMUP_RISK_SAMPLES} band=own"


def test_cost_aware_keeps_its_own_band_while_the_exposure_has_not_moved():
    model = warming_model(WARMUP_RISK_SAMPLES)  # enough returns, but the exposure never changed
    assert model.warmed_up and model.drift_var_coin2_per_year == 0
    outcome = cost_aware().decide(view("0.5"), asset_policy("1"), ctx(risk=model))
    assert outcome.decision.intent is None and outcome.decision.band_coin == D(1)
    band, detail = cost_aware().band_coin(view("0"), ctx(risk=model), OWN_BAND)
    assert (band, detail) == (D(1), f"warming_up returns={WARMUP_RISK_SAMPLES}/{WARMUP_RISK_SAMPLES} drift=0 "
                                    "band=own")


def test_cost_aware_warm_up_keeps_the_hard_maximum_and_the_lot_step():
    model = warming_model(WARMUP_RISK_SAMPLES - 1, exposure_moves=True)
    assert not model.warmed_up
    wide = cost_aware(max_pct="1").band_coin(view("0"), ctx(risk=model), Band(BandUnit.COIN, D(5)))
    assert wide == (D("0.2"), f"warming_up returns={WARMUP_RISK_SAMPLES - 1}/{WARMUP_RISK_SAMPLES} "
                              "band=max_deviation")  # 1% of 20 BTC gross
    narrow, _ = cost_aware().band_coin(view("0"), ctx(risk=model), Band(BandUnit.COIN, D("0.0001")))
    assert narrow == D("0.001")  # one lot step


def test_cost_aware_band_is_the_cube_root_law_once_warmed_up():
    model = warming_model(WARMUP_RISK_SAMPLES, exposure_moves=True)
    assert model.returns == WARMUP_RISK_SAMPLES and model.warmed_up
    band, detail = cost_aware().band_coin(view("0"), ctx(risk=model), OWN_BAND)
    assert detail.startswith("cost_rate=0.0006 ")
    expected = cost_aware_half_width_coin(0.0006, 50_000.0, model.vol_per_sqrt_year,
                                          model.drift_var_coin2_per_year, 1e-5, D("0.001"), D(2))
    assert band == expected != OWN_BAND.half_width


def test_cost_aware_trades_to_the_edge_when_asked():
    band, _ = cost_aware().band_coin(view("0"), ctx(), OWN_BAND)
    outcome = cost_aware().decide(view("3"), asset_policy(to=RebalanceTo.EDGE), ctx())
    assert math.isclose(float(-signed(outcome.decision)), 3 - float(band), abs_tol=0.001)


def test_risk_model_learns_vol_from_prices_and_drift_from_the_exposure():
    model = RiskModel.for_bar(300.0)
    assert model.vol_per_sqrt_year is None and model.drift_var_coin2_per_year is None
    model = model.observe(100.0, D(10), 0.0).observe(101.0, D(11), 300.0)
    assert model.vol_per_sqrt_year == pytest.approx(abs(math.log(1.01)) * math.sqrt(SECONDS_PER_YEAR / 300))
    assert model.drift_var_coin2_per_year == pytest.approx(1.0 / 300 * SECONDS_PER_YEAR)


def test_policies_refuse_meaningless_settings():
    with pytest.raises(ValueError):
        TimerPolicy(0)
    with pytest.raises(ValueError):
        cost_aware(ra=0)
    with pytest.raises(ValueError):
        SkipRule(1e-5, 0)
