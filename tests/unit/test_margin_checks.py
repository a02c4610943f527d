"""Margin in the loop (issue 6): the standard cross margin of an account, the pre-trade margin check, the
`margin_low` breach, coin-neutral deltas, and the simulator's margin, liquidation and options."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from deltakeeper.adapters.metrics import BotMetrics
from deltakeeper.app.margin_watch import MarginWatch
from deltakeeper.app.market_state import CoinNeutralMarketState
from deltakeeper.app.watch import Watch
from deltakeeper.config import load_settings
from deltakeeper.domain.errors import ConfigError, OrderRejected
from deltakeeper.domain.exposure import Position, asset_deltas
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.margin import (
    MarginRules,
    account_margin,
    coin_equity,
    coin_neutral_delta,
    leg_requirements,
    liquidation_price,
    move_to_liquidation,
)
from deltakeeper.domain.margin_headroom import HeadroomLevels
from deltakeeper.domain.margin_tiers import (
    DEFAULT_TIERS_USD,
    MarginTier,
    liquidation_price_usd,
    maintenance_margin_usd,
)
from deltakeeper.domain.orders import Fill, OrderIntent, OrderRequest, Quote, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.risk import (
    MarginContext,
    RiskContext,
    RiskLimits,
    StateMachine,
    TradingState,
    check,
    headroom_after,
    margin_after,
)
from deltakeeper.policy_settings import margin_levels
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import option_quote, rally_feed, synthetic_feed, with_option_quotes
from deltakeeper.sim.markets import ASSETS, default_instruments, option_instruments

D = Decimal
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
RULES = MarginRules()

SOL_PERP = default_instruments()["SOL/USDT:USDT"]
BTC_INVERSE = default_instruments()["BTC/USD:BTC"]
# 0.01 BTC a contract, as tests/unit/test_risk.py
LINEAR = Instrument(
    "BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", contract_size=D("0.01"), lot_step_contracts=D(1)
)
CALL = Instrument(
    "BTC/USD:BTC-260204-60000-C",
    Kind.OPTION,
    "BTC",
    "USD",
    "BTC",
    strike=D(60_000),
    option_type="call",
    expiry=T0 + timedelta(days=30),
)
PUT = replace(CALL, symbol="BTC/USD:BTC-260204-60000-P", option_type="put")
INSTRUMENTS = {i.symbol: i for i in (SOL_PERP, BTC_INVERSE, LINEAR, CALL, PUT)}
PRICE = D(60_000)


# -- standard cross margin (REFERENCE 3.1) ------------------------------------------------------


def test_tiered_maintenance_margin_is_reference_3_1_and_goes_on_above_the_last_cap() -> None:
    assert maintenance_margin_usd(D(6_000_000), DEFAULT_TIERS_USD) == D(133_700)
    assert maintenance_margin_usd(D(-6_000_000), DEFAULT_TIERS_USD) == D(133_700)
    assert maintenance_margin_usd(D(100_000_000), DEFAULT_TIERS_USD) == D(100_000_000) * D("0.10") - 1_266_300


def test_leg_requirements_of_linear_and_inverse_positions_in_their_settle_coin() -> None:
    # 1,000 SOL short at 100: 100,000 USD notional, 10x -> 10,000 IM, MM 0.5% - 50 = 450.
    assert leg_requirements(SOL_PERP, D(-1000), D(100), None, RULES) == (D(10_000), D(450))
    assert leg_requirements(SOL_PERP, D(-1000), D(100), None, RULES, leverage=D(5)) == (D(20_000), D(450))
    # 100,000 USD face at 50,000: 2 BTC, 0.2 BTC IM, MM on the USD face (450) in coin.
    im, mm = leg_requirements(BTC_INVERSE, D(100_000), D(50_000), None, RULES)
    assert im == D("0.2") and mm == D(450) / D(50_000)
    assert leg_requirements(SOL_PERP, D(0), D(100), None, RULES) == (0, 0)


def test_leg_requirements_of_options_follow_deribit_standard_margin() -> None:
    mark = D("0.0685")
    # ATM short call: IM max(0.15 - 0, 0.10) + mark, MM 0.075 + mark, per coin.
    expected = (2 * (D("0.15") + mark), 2 * (D("0.075") + mark))
    assert leg_requirements(CALL, D(-2), mark, PRICE, RULES) == expected
    # 10% out of the money: IM floor 0.10 + mark.
    otm = replace(CALL, strike=D(66_000))
    assert leg_requirements(otm, D(-1), D("0.02"), PRICE, RULES)[0] == D("0.10") + D("0.02")
    # A short put: MM max(0.075, 0.075 x mark) + mark; IM at least that.
    im, mm = leg_requirements(PUT, D(-1), mark, PRICE, RULES)
    assert mm == D("0.075") + mark and im >= mm
    # Long options are paid for.
    assert leg_requirements(CALL, D(3), mark, PRICE, RULES) == (0, 0)
    with pytest.raises(ValueError, match="underlying"):
        leg_requirements(CALL, D(-1), mark, None, RULES)


def test_account_margin_of_a_spot_and_perp_hedge_gives_headroom_and_the_short_legs_liquidation() -> None:
    position = Position(SOL_PERP.symbol, D(-1000), D(100), D(100))
    margin = account_margin(INSTRUMENTS, {"USDT": D(11_000), "SOL": D(1000)}, [position], {}, RULES)

    usdt = margin.by_settle["USDT"]
    assert usdt.equity == D(11_000) and usdt.maintenance_margin == D(450) and usdt.initial_margin == D(10_000)
    assert margin.headroom == usdt.headroom == (D(11_000) - 450) / D(11_000)
    (leg,) = usdt.legs
    # equity 11,000 - 1,000 (S - 100) meets MM 5 S - 50 at S = 111,050 / 1,005 (the spot gain sits in SOL).
    assert leg.liquidation_price == D(111_050) / D(1005)
    assert leg.liquidation_price == liquidation_price_usd(D(-1000), D(100), D(11_000), DEFAULT_TIERS_USD)
    assert leg.liquidation_move == pytest.approx(0.104975, abs=1e-6)
    assert leg.source == "estimate" and margin.liquidation_move == leg.liquidation_move


def test_account_margin_takes_the_exchanges_figures_where_it_reports_them_and_keeps_the_estimate() -> None:
    reported = Position(
        SOL_PERP.symbol,
        D(-1000),
        D(100),
        D(100),
        liquidation_price=D(109),
        initial_margin=D(9000),
        maintenance_margin=D(500),
        leverage=D(11),
    )
    margin = account_margin(INSTRUMENTS, {"USDT": D(11_000)}, [reported], {}, RULES)
    (leg,) = margin.by_settle["USDT"].legs
    assert (leg.liquidation_price, leg.initial_margin, leg.maintenance_margin, leg.leverage) == (
        D(109),
        D(9000),
        D(500),
        D(11),
    )
    assert leg.source == "exchange" and leg.liquidation_move == pytest.approx(0.09)
    assert leg.estimated_maintenance_margin == D(450) and leg.estimated_liquidation_price is not None
    assert margin.by_settle["USDT"].maintenance_margin == D(500)


def test_a_short_inverse_perp_against_its_own_coin_collateral_is_never_liquidated() -> None:
    # REFERENCE 1.2: 1 BTC, short 50,000 USD face opened at 50,000, now at 60,000.
    short = Position(BTC_INVERSE.symbol, D(-50_000), D(50_000), D(60_000))
    margin = account_margin(INSTRUMENTS, {"BTC": D(1)}, [short], {}, RULES)
    btc = margin.by_settle["BTC"]
    assert btc.equity == 1 + D(-50_000) * (1 / D(50_000) - 1 / D(60_000))
    assert btc.legs[0].liquidation_price is None and btc.headroom > D("0.99")


def test_a_long_inverse_perp_liquidates_where_its_coin_equity_meets_its_maintenance_margin() -> None:
    long = Position(BTC_INVERSE.symbol, D(100_000), D(50_000), D(50_000))
    (leg,) = account_margin(INSTRUMENTS, {"BTC": D(1)}, [long], {}, RULES).by_settle["BTC"].legs
    price = leg.liquidation_price
    assert price == (D(100_000) + 450) / 3
    equity = 1 + D(100_000) * (1 / D(50_000) - 1 / price)
    assert equity == pytest.approx(D(450) / price, abs=D("1e-20"))


COIN_TIERS = tuple(MarginTier(D(floor), D(cap), D(mmr)) for floor, cap, mmr in [
    (0, 100, "0.005"), (100, 500, "0.01"), (500, 2000, "0.02")])
"""An inverse table on the coin notional, as ccxt gives inverse tiers (BTC)."""


@pytest.mark.parametrize("tiers_on_coin", [False, True])
@pytest.mark.parametrize(("face_usd", "collateral_btc"), [(D(400_000), D(2)), (D(-400_000), D(2)),
                                                          (D(-30_000_000), D(150))])
def test_an_inverse_liquidation_price_is_where_coin_equity_meets_the_tables_margin(
    face_usd: Decimal, collateral_btc: Decimal, tiers_on_coin: bool
) -> None:
    # On the USD face the rate is the face's bracket; on the coin notional |N| / S it moves with S: the
    # 30M USD short is 600 BTC at 50,000 (the 500+ bracket) and about 300 BTC where it is liquidated.
    entry = D(50_000)
    tiers = COIN_TIERS if tiers_on_coin else DEFAULT_TIERS_USD
    position = Position(BTC_INVERSE.symbol, face_usd, entry, entry)
    price = liquidation_price(BTC_INVERSE, position, collateral_btc, tiers, tiers_on_coin)

    assert price is not None and (price < entry) == (face_usd > 0)
    equity = collateral_btc + face_usd * (1 / entry - 1 / price)
    mm = (maintenance_margin_usd(face_usd / price, tiers) if tiers_on_coin
          else maintenance_margin_usd(face_usd, tiers) / price)
    assert abs(equity - mm) < D("1e-20")
    if tiers_on_coin and abs(face_usd) > 1_000_000:
        assert 100 < abs(face_usd) / price < 500


def test_the_move_to_liquidation_is_zero_for_a_future_past_it_and_signed_otherwise() -> None:
    assert move_to_liquidation(D(90), D(100), D(1)) == pytest.approx(-0.1)
    assert move_to_liquidation(D(110), D(100), D(-1)) == pytest.approx(0.1)
    assert move_to_liquidation(D(110), D(100), D(1)) == 0.0  # a long already below its liquidation price
    assert move_to_liquidation(D(90), D(100), D(-1)) == 0.0
    assert move_to_liquidation(D(90), D(100), None) == pytest.approx(-0.1)  # an option: its direction
    assert move_to_liquidation(None, D(100), D(1)) is None
    assert move_to_liquidation(D(90), D(0), D(1)) is None


def test_account_margin_counts_a_short_options_mark_in_its_margin_not_in_the_equity() -> None:
    calls = Position(CALL.symbol, D(-10), D("0.06"), D("0.07"), underlying_price=PRICE)
    btc = account_margin(INSTRUMENTS, {"BTC": D(2)}, [calls], {}, RULES).by_settle["BTC"]
    assert btc.equity == D(2)
    assert btc.maintenance_margin == 10 * (D("0.075") + D("0.07"))
    assert btc.legs[0].liquidation_price is None and btc.legs[0].leverage is None


# -- the pre-trade check ------------------------------------------------------------------------

LIMITS = RiskLimits(
    max_order_usd=D(10_000_000),
    max_daily_traded_usd=D(100_000_000),
    max_position_usd=D(100_000_000),
    stale_secs=15,
    price_collar_bps=D(100),
    min_margin_headroom=D("0.20"),
    critical_margin_headroom=D("0.15"),
)


def margin_ctx(equity: str, *, headroom: str = "1", leverage: str = "10", **others: str) -> MarginContext:
    return MarginContext(
        D(equity),
        D(others.get("initial", "0")),
        D(others.get("maintenance", "0")),
        D(headroom),
        MarginRules(leverage=D(leverage)),
    )


def ctx(
    margin: MarginContext | None, position: int = 0, state: TradingState = TradingState.ACTIVE
) -> RiskContext:
    return RiskContext(1.0, PRICE, D(position), D(0), state, margin)


def sell(contracts: int) -> OrderIntent:
    return OrderIntent(LINEAR.symbol, Side.SELL, D(contracts), PRICE)


def test_margin_after_counts_the_fee_and_the_new_size_and_headroom_after_is_its_ratio() -> None:
    after = margin_after(sell(100), LINEAR, D(0), margin_ctx("10000", maintenance="30", initial="100"))
    # 1 BTC at 60,000: fee 33, IM 6,000, MM 0.5% of 60,000 - 50 = 250.
    assert after.equity == D(10_000) - D(33)
    assert after.initial_margin == D(6100) and after.maintenance_margin == D(280)
    assert headroom_after(sell(100), LINEAR, D(0), margin_ctx("10000", maintenance="30")) == after.headroom


def test_check_passes_an_order_that_leaves_enough_margin_unchanged() -> None:
    outcome = check(sell(100), LINEAR, ctx(margin_ctx("10000")), LIMITS)
    assert outcome.intent == sell(100) and outcome.notes == ()


def test_check_makes_an_order_smaller_to_keep_its_initial_margin_within_the_equity() -> None:
    outcome = check(sell(170), LINEAR, ctx(margin_ctx("10000")), LIMITS)
    # 165 contracts: 99,000 USD at 10x is 9,900 IM, within 10,000 less the fee; 166 is not.
    assert outcome.intent == sell(165)
    assert outcome.notes == ("initial_margin",)


def test_check_makes_an_order_smaller_to_keep_the_headroom_above_the_minimum() -> None:
    margin = margin_ctx("1000", leverage="1000")
    outcome = check(sell(1000), LINEAR, ctx(margin), LIMITS)
    assert outcome.notes == ("margin_headroom",)
    assert outcome.intent is not None
    amount = int(outcome.intent.amount_contracts)
    assert headroom_after(sell(amount), LINEAR, D(0), margin) >= D("0.20")
    assert headroom_after(sell(amount + 1), LINEAR, D(0), margin) < D("0.20")


def test_check_refuses_an_order_of_which_no_part_fits_the_margin() -> None:
    outcome = check(sell(10), LINEAR, ctx(margin_ctx("10", maintenance="9")), LIMITS)
    assert outcome.intent is None and outcome.notes == ("margin_headroom",)
    broke = check(sell(10), LINEAR, ctx(margin_ctx("0")), LIMITS)
    assert broke.intent is None and broke.notes == ("margin_headroom",)


def test_an_order_that_shrinks_the_position_is_never_held_back_by_margin() -> None:
    starved = margin_ctx("10", maintenance="50", headroom="-4")
    buy_back = OrderIntent(LINEAR.symbol, Side.BUY, D(40), PRICE)
    outcome = check(buy_back, LINEAR, ctx(starved, position=-100), LIMITS)
    assert outcome.intent == buy_back and "margin_headroom" not in outcome.notes
    # Through zero to a smaller position it still shrinks; to a bigger one, the part that closes the
    # position goes and the rest must fit.
    smaller = OrderIntent(LINEAR.symbol, Side.BUY, D(150), PRICE)
    assert check(smaller, LINEAR, ctx(starved, position=-100), LIMITS).intent == smaller
    flip = OrderIntent(LINEAR.symbol, Side.BUY, D(250), PRICE)
    outcome = check(flip, LINEAR, ctx(starved, position=-100), LIMITS)
    assert outcome.intent == replace(flip, amount_contracts=D(100))
    assert outcome.notes == ("margin_low", "margin_headroom")


def test_headroom_below_the_critical_level_is_the_margin_low_breach_on_every_outcome() -> None:
    low = margin_ctx("100000", headroom="0.10")
    assert check(sell(1), LINEAR, ctx(low), LIMITS).notes == ("margin_low",)
    stale = replace(ctx(low), quote_age_secs=60.0)
    assert check(sell(1), LINEAR, stale, LIMITS).notes == ("stale_price", "margin_low")
    reduce_only = check(sell(1), LINEAR, ctx(low, state=TradingState.REDUCE_ONLY), LIMITS)
    assert reduce_only.intent is None and reduce_only.notes == ("reduce_only", "margin_low")
    assert check(sell(1), LINEAR, ctx(margin_ctx("100000", headroom="0.16")), LIMITS).notes == ()
    # Without a margin source or limits, nothing margin-related happens.
    assert check(sell(1), LINEAR, ctx(None), LIMITS).notes == ()
    no_limits = replace(LIMITS, min_margin_headroom=None, critical_margin_headroom=None)
    assert check(sell(1000), LINEAR, ctx(margin_ctx("10")), no_limits).intent == sell(1000)


def test_margin_low_moves_the_state_machine_to_reduce_only_until_it_has_cleared_for_a_while() -> None:
    machine = StateMachine().observe(frozenset({"margin_low"}), T0, 300)
    assert machine.state is TradingState.REDUCE_ONLY and machine.cause == "margin_low"
    machine = machine.observe(frozenset(), T0 + timedelta(seconds=1), 300)
    assert machine.state is TradingState.REDUCE_ONLY
    assert machine.observe(frozenset(), T0 + timedelta(seconds=301), 300).state is TradingState.ACTIVE


# -- coin-margined accounts: USD- or coin-neutral (REFERENCE 1.2) --------------------------------


def test_a_coin_margined_short_hedge_is_usd_neutral_at_every_price_and_short_its_size_coin_neutral() -> None:
    for price in (D(40_000), D(50_000), D(60_000), D(90_000)):
        short = Position(BTC_INVERSE.symbol, D(-50_000), D(50_000), price)
        usd = asset_deltas(INSTRUMENTS, {"BTC": D(1)}, [short], {"BTC": price})["BTC"]
        assert usd.delta_coin == pytest.approx(D(0), abs=D("1e-20"))
        equity = coin_equity("BTC", INSTRUMENTS, {"BTC": D(1)}, [short], {"BTC": price})
        assert equity == 1 + D(-50_000) * (1 / D(50_000) - 1 / price)
        coin = coin_neutral_delta(usd, equity, price)
        assert coin.delta_coin == pytest.approx(D(-50_000) / price, abs=D("1e-20"))
        assert coin.delta_usd == coin.delta_coin * price and coin.gross_coin == usd.gross_coin
    # A wallet of the coin and nothing else is coin-neutral.
    alone = asset_deltas(INSTRUMENTS, {"BTC": D(1)}, [], {"BTC": PRICE})["BTC"]
    assert coin_neutral_delta(alone, D(1), PRICE).delta_coin == 0


def test_coin_equity_counts_the_value_of_options_settled_in_the_coin() -> None:
    calls = Position(CALL.symbol, D(-10), D("0.06"), D("0.07"), delta=D("0.5"))
    assert coin_equity("BTC", INSTRUMENTS, {"BTC": D(2), "USDT": D(5)}, [calls], {"BTC": PRICE}) == D("1.3")


def test_coin_neutral_market_state_applies_to_its_assets_only() -> None:
    snapshot = AccountSnapshot({"BTC": D(1), "SOL": D(10)}, (), T0)
    quotes = {s: Quote(s, p, p, p, T0) for s, p in (("BTC/USD:BTC", PRICE), ("SOL/USDT:USDT", D(100)))}
    state = CoinNeutralMarketState(
        dict(INSTRUMENTS), {}, {"BTC": "BTC/USD:BTC", "SOL": "SOL/USDT:USDT"}, coin_neutral=frozenset({"BTC"})
    )
    for one in quotes.values():
        state.on_quote(one)
    state.on_account(snapshot)
    deltas = state.deltas()
    assert deltas["BTC"].delta_coin == 0 and deltas["SOL"].delta_coin == 10
    assert state.recompute_deltas() == deltas



def test_a_coin_neutral_asset_values_its_options_by_black76_at_the_clocks_time() -> None:
    """An option with no published delta needs the time for Black-76, in the coin equity too."""
    calls = Position(CALL.symbol, D(-10), D("0.06"), D(0), mark_iv=0.6)
    snapshot = AccountSnapshot({"BTC": D(2)}, (calls,), T0)
    quotes = {"BTC/USD:BTC": Quote("BTC/USD:BTC", PRICE, PRICE, PRICE, T0)}
    state = CoinNeutralMarketState(dict(INSTRUMENTS), {}, {"BTC": "BTC/USD:BTC"},
                                   clock=SimClock(0, anchor_sim=T0), coin_neutral=frozenset({"BTC"}))
    for one in quotes.values():
        state.on_quote(one)
    state.on_account(snapshot)
    model = greeks(60_000.0, 60_000.0, 30 / 365, 0.6, True)
    # USD-neutral, the wallet and the calls' plain delta: 2 - 10 delta; less the coin equity, the wallet
    # less what the short calls are worth: 2 - 10 premium.
    expected = D(2) - 10 * D(repr(model.delta)) - (D(2) - 10 * D(repr(model.premium_coin)))
    assert abs(state.deltas()["BTC"].delta_coin - expected) < D("1e-12")


# -- settings and metrics -----------------------------------------------------------------------


def test_margin_settings_have_defaults_and_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DK_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert (
        settings.margin_min_headroom_pct,
        settings.margin_warn_headroom_pct,
        settings.margin_critical_headroom_pct,
    ) == (20, 35, 15)
    monkeypatch.setenv("DK_ASSETS__BTC__NEUTRAL", "coin")
    monkeypatch.setenv("DK_SIM_SCENARIO", "rally")
    settings = load_settings()
    assert settings.assets["BTC"].neutral == "coin" and settings.sim_scenario == "rally"
    monkeypatch.setenv("DK_ASSETS__BTC__NEUTRAL", "eur")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "DK_ASSETS__BTC__NEUTRAL"
    monkeypatch.delenv("DK_ASSETS__BTC__NEUTRAL")
    monkeypatch.setenv("DK_MARGIN_CRITICAL_HEADROOM_PCT", "100")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "DK_MARGIN_CRITICAL_HEADROOM_PCT"


def test_the_watches_and_the_settings_share_one_set_of_headroom_levels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DK_"):
            monkeypatch.delenv(name)
    levels = margin_levels(load_settings())
    unused: Any = SimpleNamespace()  # neither watch reads its collaborators when built

    assert Watch(unused).margin_levels == MarginWatch(*[unused] * 9).levels == levels == HeadroomLevels()


def test_margin_headroom_renders_as_a_prometheus_gauge_per_settlement_currency() -> None:
    text = BotMetrics().render({"margin_headroom": {"USDT": 0.25, "BTC": float("-inf")}})
    assert "# TYPE deltakeeper_margin_headroom gauge" in text
    assert 'deltakeeper_margin_headroom{settle="USDT"} 0.25' in text
    assert 'deltakeeper_margin_headroom{settle="BTC"} -Inf' in text
    assert "deltakeeper_margin_headroom" not in BotMetrics().render({})


# -- the simulated exchange's margin, liquidation and options -----------------------------------


def engine_with(balances: dict[str, Decimal], options: bool = False) -> SimEngine:
    instruments = default_instruments()
    if options:
        instruments.update(option_instruments(start=T0, price=60_000))
    engine = SimEngine(instruments, seed=3)
    engine.walk_depth = False
    engine.open_account("a", balances)
    return engine


def flat(symbol: str, price: str, ts: datetime = T0) -> Quote:
    p = D(price)
    return Quote(symbol, p, p, p, ts, index=p)


def test_sim_positions_report_the_engines_margin_figures() -> None:
    engine = engine_with({"USDT": D(2000), "SOL": D(100)})
    engine.on_quote(flat("SOL/USDT:USDT", "100"))
    engine.place_order("a", OrderRequest("c1", "SOL/USDT:USDT", Side.SELL, D(100)), T0)
    (position,) = engine.positions("a")
    assert position.initial_margin == 1000 and position.maintenance_margin == 40 and position.leverage == 10
    expected = liquidation_price_usd(D(-100), D(100), D(2000) - D("5.5"), DEFAULT_TIERS_USD)
    assert expected is not None and position.liquidation_price == expected.quantize(D("1E-8"))


def test_sim_liquidates_a_short_leg_at_its_mark_when_equity_falls_below_maintenance_margin() -> None:
    engine = engine_with({"USDT": D(2000), "SOL": D(100)})
    events: list[object] = []
    engine.subscribe(lambda _, event: events.append(event))
    engine.on_quote(flat("SOL/USDT:USDT", "100"))
    engine.place_order("a", OrderRequest("c1", "SOL/USDT:USDT", Side.SELL, D(100)), T0)
    (position,) = engine.positions("a")
    assert position.liquidation_price is not None
    below = position.liquidation_price - D("0.05")
    engine.on_quote(flat("SOL/USDT:USDT", str(below), T0 + timedelta(minutes=1)))
    assert engine.positions("a")  # not yet
    engine.on_quote(flat("SOL/USDT:USDT", "119.6", T0 + timedelta(minutes=2)))

    assert engine.positions("a") == []
    liquidation = [e for e in events if isinstance(e, Fill) and e.liquidation]
    (fill,) = liquidation
    assert fill.client_order_id is None and fill.side is Side.BUY and fill.amount_contracts == 100
    assert fill.price == D("119.6") and fill.fee == D("6.578")
    # The wallet keeps what is left: 2,000 - 5.5 - 100 x 19.6 - 6.578.
    assert engine.balances("a")["USDT"] == D(2000) - D("5.5") - D(1960) - D("6.578")
    assert engine.order("a", exchange_order_id=fill.exchange_order_id) is not None
    assert isinstance(events[-1], AccountSnapshot)


def test_sim_resets_a_bankrupt_wallet_to_zero_after_liquidation() -> None:
    engine = engine_with({"USDT": D(2000), "SOL": D(100)})
    engine.on_quote(flat("SOL/USDT:USDT", "100"))
    engine.place_order("a", OrderRequest("c1", "SOL/USDT:USDT", Side.SELL, D(100)), T0)
    engine.on_quote(flat("SOL/USDT:USDT", "150", T0 + timedelta(minutes=1)))
    assert engine.positions("a") == [] and engine.balances("a")["USDT"] == 0


def test_sim_liquidation_can_be_switched_off() -> None:
    engine = engine_with({"USDT": D(2000)})
    engine.liquidations = False
    engine.on_quote(flat("SOL/USDT:USDT", "100"))
    engine.place_order("a", OrderRequest("c1", "SOL/USDT:USDT", Side.SELL, D(100)), T0)
    engine.on_quote(flat("SOL/USDT:USDT", "150", T0 + timedelta(minutes=1)))
    assert engine.positions("a")[0].contracts == -100


def test_option_quotes_are_black76_in_coin_at_the_reference_numbers() -> None:
    call = next(
        i
        for i in option_instruments(start=T0, price=60_000).values()
        if i.strike == 60_000 and i.is_call and i.expiry == datetime(2026, 2, 4, 8, tzinfo=UTC)
    )
    quote = option_quote(call, call.expiry - timedelta(days=30), 60_000.0, 0.60)  # type: ignore[operator]
    # REFERENCE 1.3: F = K = 60,000, T = 30/365, s = 0.60: premium 0.06853941 BTC.
    assert quote.mark == D("0.06853941")
    assert quote.bid < quote.mark < quote.ask and quote.index == 60_000 and quote.mark_iv == 0.60
    assert (quote.ask - quote.bid) % D("0.0001") == 0


def test_option_markets_are_coin_settled_deribit_style_around_the_start_price() -> None:
    listed = option_instruments(start=T0, price=61_234.5)
    assert len(listed) == 2 * 5 * 2
    strikes = sorted({i.strike for i in listed.values() if i.strike is not None})
    assert strikes == [D(55_000), D(58_000), D(61_000), D(64_000), D(67_000)]
    one = listed["BTC/USD:BTC-260112-61000-C"]
    assert one.kind is Kind.OPTION and one.coin_settled and one.settle == "BTC" and one.contract_size == 1
    assert one.expiry == datetime(2026, 1, 12, 8, tzinfo=UTC) and one.funding_interval_secs is None


def test_with_option_quotes_adds_a_quote_for_each_unexpired_option_at_every_tick() -> None:
    options = option_instruments(start=T0, price=60_000, expiry_days=(1,), moneyness=(1.0,))
    prices = synthetic_feed(ASSETS["BTC"], start=T0, price=60_000, tick_secs=3600)
    feed = with_option_quotes(prices, options, 0.5)
    first = next(feed)[1]
    assert len(first) == 3 + 2
    for _ in range(25):
        ts, quotes = next(feed)
    assert ts > T0 + timedelta(days=1) and len(quotes) == 3


def test_sim_trades_options_for_a_premium_in_coin_and_reports_their_greeks() -> None:
    engine = engine_with({"BTC": D(2)}, options=True)
    call = engine.instruments["BTC/USD:BTC-260204-60000-C"]
    engine.on_quote(flat("BTC/USDT:USDT", "60000"))
    quote = option_quote(call, T0, 60_000.0, 0.6)
    engine.on_quote(quote)
    engine.place_order("a", OrderRequest("c1", call.symbol, Side.SELL, D(10)), T0)

    # Premium 10 x bid in, fee 0.0003 x 10 (under 12.5% of the premium) out.
    assert engine.balances("a")["BTC"] == 2 + 10 * quote.bid - D("0.003")
    (position,) = engine.positions("a")
    model = greeks(60_000.0, 60_000.0, 30.0 / 365 - 4 / 24 / 365, 0.6, True)
    assert position.contracts == -10 and position.mark_price == quote.mark and position.mark_iv == 0.6
    assert float(position.delta or 0) == pytest.approx(model.delta, abs=1e-3)
    assert position.underlying_price == 60_000 and position.liquidation_price is None
    assert position.maintenance_margin == (10 * (D("0.075") + quote.mark)).quantize(D("1E-8"))
    # The account's delta: wallet + value + adjusted delta = wallet - 10 x plain delta.
    deltas = asset_deltas(engine.instruments, engine.balances("a"), [position], {"BTC": D(60_000)})
    assert deltas["BTC"].delta_coin == engine.balances("a")["BTC"] - 10 * (position.delta or 0)


def test_sim_refuses_a_short_option_the_coin_wallet_cannot_margin() -> None:
    engine = engine_with({"BTC": D("0.1")}, options=True)
    call = engine.instruments["BTC/USD:BTC-260204-60000-C"]
    engine.on_quote(option_quote(call, T0, 60_000.0, 0.6))
    with pytest.raises(OrderRejected, match="insufficient margin"):
        engine.place_order("a", OrderRequest("c1", call.symbol, Side.SELL, D(10)), T0)
    engine.place_order("a", OrderRequest("c2", call.symbol, Side.BUY, D(1)), T0)  # a long is paid for
    assert engine.positions("a")[0].contracts == 1


def test_sim_settles_options_at_expiry_at_their_intrinsic_value_in_coin() -> None:
    engine = engine_with({"BTC": D(2)}, options=True)
    call = engine.instruments["BTC/USD:BTC-260112-60000-C"]
    engine.on_quote(option_quote(call, T0, 60_000.0, 0.6))
    engine.place_order("a", OrderRequest("c1", call.symbol, Side.BUY, D(1)), T0)
    wallet = engine.balances("a")["BTC"]
    assert call.expiry is not None
    engine.on_quote(flat("BTC/USDT:USDT", "66000", call.expiry + timedelta(seconds=1)))

    assert engine.positions("a") == []
    assert engine.balances("a")["BTC"] == wallet + (D(6000) / D(66_000)).quantize(D("1E-8"))
    with pytest.raises(OrderRejected, match="expired"):
        engine.place_order("a", OrderRequest("c2", call.symbol, Side.BUY, D(1)), call.expiry)


def test_rally_feed_is_calm_then_climbs_then_creeps() -> None:
    feed = rally_feed(
        start=T0,
        price=100.0,
        vol_annual=0.0,
        tick_secs=600,
        calm_secs=3600,
        rally_secs=3600,
        rise=0.10,
        creep_per_hour=0.01,
    )
    marks = [float(quotes[1].mark) for _, quotes in (next(feed) for _ in range(25))]
    assert marks[0] == pytest.approx(100, abs=0.02) and marks[6] == pytest.approx(100, abs=0.02)
    assert marks[9] == pytest.approx(105, abs=0.02) and marks[12] == pytest.approx(110, abs=0.02)
    assert marks[24] == pytest.approx(110 * 1.02, abs=0.02)
    assert all(b >= a for a, b in itertools.pairwise(marks))


def test_sim_pushes_a_fresh_snapshot_when_a_held_options_quote_moves() -> None:
    engine = engine_with({"BTC": D(2)}, options=True)
    call = engine.instruments["BTC/USD:BTC-260204-60000-C"]
    engine.on_quote(option_quote(call, T0, 60_000.0, 0.6))
    engine.place_order("a", OrderRequest("c1", call.symbol, Side.SELL, D(1)), T0)
    snapshots: list[AccountSnapshot] = []
    engine.subscribe(lambda _, event: snapshots.append(event) if isinstance(event, AccountSnapshot) else None)
    engine.on_quote(option_quote(call, T0 + timedelta(minutes=1), 61_000.0, 0.6))
    (snapshot,) = snapshots
    (position,) = snapshot.positions
    assert position.underlying_price == D("61000.0") and snapshot.ts == T0 + timedelta(minutes=1)
    other = engine.instruments["BTC/USD:BTC-260204-66000-C"]
    engine.on_quote(option_quote(other, T0 + timedelta(minutes=1), 61_000.0, 0.6))
    assert len(snapshots) == 1  # not held: nothing to push
