from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from tests.instruments import LINEAR_WHOLE as LINEAR
from tests.instruments import OKX_INVERSE as INVERSE

from deltakeeper.domain.orders import OrderIntent, Side
from deltakeeper.domain.risk import RiskContext, RiskLimits, StateMachine, TradingState, check

PRICE = D(60_000)
LIMITS = RiskLimits(
    max_order_usd=D(60_000),  # 100 contracts
    max_daily_traded_usd=D(300_000),  # 500 contracts
    max_position_usd=D(600_000),  # 1,000 contracts
    stale_secs=15,
    price_collar_bps=D(100),
)
CTX = RiskContext(
    quote_age_secs=1.0,
    mark_price=PRICE,
    position_contracts=D(0),
    traded_today_usd=D(0),
    state=TradingState.ACTIVE,
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CLEAR_SECS = 300


def buy(contracts: int | str, price: D = PRICE, symbol: str = LINEAR.symbol) -> OrderIntent:
    return OrderIntent(symbol, Side.BUY, D(contracts), price)


def sell(contracts: int | str, price: D = PRICE) -> OrderIntent:
    return OrderIntent(LINEAR.symbol, Side.SELL, D(contracts), price)


def test_check_passes_an_order_within_every_limit_unchanged():
    outcome = check(buy(80), LINEAR, CTX, LIMITS)
    assert outcome.intent == buy(80)
    assert outcome.notes == ()


def test_check_denies_everything_when_halted():
    outcome = check(
        sell(1), LINEAR, replace(CTX, state=TradingState.HALTED, position_contracts=D(10)), LIMITS
    )
    assert outcome.intent is None
    assert outcome.notes == ("halted",)


def test_check_denies_an_order_on_a_stale_price():
    assert check(buy(1), LINEAR, replace(CTX, quote_age_secs=15.0), LIMITS).intent is not None
    outcome = check(buy(1), LINEAR, replace(CTX, quote_age_secs=15.5), LIMITS)
    assert outcome.intent is None
    assert outcome.notes == ("stale_price",)


def test_check_denies_an_order_priced_outside_the_collar_around_the_mark():
    assert check(buy(1, D(60_500)), LINEAR, CTX, LIMITS).intent is not None  # 83 bp
    assert check(buy(1, D(59_500)), LINEAR, CTX, LIMITS).intent is not None
    outcome = check(buy(1, D(60_700)), LINEAR, CTX, LIMITS)  # 117 bp
    assert outcome.intent is None
    assert outcome.notes == ("price_collar",)
    assert check(sell(1, D(59_300)), LINEAR, CTX, LIMITS).intent is None


def test_check_denies_without_a_mark_price():
    outcome = check(buy(1), LINEAR, replace(CTX, mark_price=D(0)), LIMITS)
    assert outcome.intent is None
    assert outcome.notes == ("no_mark_price",)


def test_check_clips_an_order_to_the_max_order_notional():
    outcome = check(buy(150), LINEAR, CTX, LIMITS)
    assert outcome.intent == buy(100)
    assert outcome.notes == ("max_order",)


def test_check_clips_max_order_down_to_a_whole_lot():
    # 601 USD a contract: 60,000 / 601 = 99.8 -> 99
    outcome = check(buy(150, D(60_100)), LINEAR, CTX, LIMITS)
    assert outcome.intent is not None
    assert outcome.intent.amount_contracts == D(99)


def test_check_max_order_counts_inverse_contracts_at_their_usd_face():
    # 100 USD a contract: 600 contracts
    outcome = check(buy(1_000, symbol=INVERSE.symbol), INVERSE, CTX, LIMITS)
    assert outcome.intent is not None
    assert outcome.intent.amount_contracts == D(600)


def test_check_clips_an_order_to_the_daily_traded_room():
    # 270,000 traded: 30,000 USD = 50 contracts left
    outcome = check(buy(80), LINEAR, replace(CTX, traded_today_usd=D(270_000)), LIMITS)
    assert outcome.intent == buy(50)
    assert outcome.notes == ("max_daily_traded",)


def test_check_denies_an_order_when_the_daily_traded_limit_is_used_up():
    outcome = check(buy(80), LINEAR, replace(CTX, traded_today_usd=D(300_000)), LIMITS)
    assert outcome.intent is None
    assert outcome.notes == ("max_daily_traded",)


def test_check_clips_an_order_to_the_position_room():
    # 950 of 1,000 contracts held: 50 left, on either side
    outcome = check(buy(80), LINEAR, replace(CTX, position_contracts=D(950)), LIMITS)
    assert outcome.intent == buy(50)
    assert outcome.notes == ("max_position",)
    short = check(sell(80), LINEAR, replace(CTX, position_contracts=D(-950)), LIMITS)
    assert short.intent == sell(50)


def test_check_denies_an_order_that_would_grow_a_full_position():
    outcome = check(buy(10), LINEAR, replace(CTX, position_contracts=D(1_000)), LIMITS)
    assert outcome.intent is None
    assert outcome.notes == ("max_position",)


def test_check_does_not_block_reducing_orders_with_daily_or_position_limits():
    over = replace(CTX, position_contracts=D(2_000), traded_today_usd=D(10_000_000))
    outcome = check(sell(80), LINEAR, over, LIMITS)
    assert outcome.intent == sell(80)
    assert outcome.notes == ()


def test_check_reduce_only_denies_an_order_that_grows_the_position():
    state = replace(CTX, state=TradingState.REDUCE_ONLY, position_contracts=D(500))
    outcome = check(buy(10), LINEAR, state, LIMITS)
    assert outcome.intent is None
    assert outcome.notes == ("reduce_only",)


def test_check_reduce_only_denies_any_order_when_flat():
    state = replace(CTX, state=TradingState.REDUCE_ONLY)
    assert check(buy(10), LINEAR, state, LIMITS).intent is None
    assert check(sell(10), LINEAR, state, LIMITS).intent is None


def test_check_reduce_only_allows_a_shrinking_order_and_marks_it_reduce_only():
    state = replace(CTX, state=TradingState.REDUCE_ONLY, position_contracts=D(500))
    outcome = check(sell(80), LINEAR, state, LIMITS)
    assert outcome.intent == replace(sell(80), reduce_only=True)
    assert outcome.notes == ()


@pytest.mark.parametrize("amount", [60, 90])
def test_check_reduce_only_clips_an_order_through_zero_to_closing_the_position(amount):
    state = replace(CTX, state=TradingState.REDUCE_ONLY, position_contracts=D(-40))
    outcome = check(buy(amount), LINEAR, state, LIMITS)
    assert outcome.intent == replace(buy(40), reduce_only=True)
    assert outcome.notes == ("reduce_only",)


def test_check_reduce_only_is_not_blocked_by_the_limits_that_caused_it():
    # over the position limit and out of daily room: the bot must still be able to shrink
    state = replace(
        CTX, state=TradingState.REDUCE_ONLY, position_contracts=D(-1_200), traded_today_usd=D(400_000)
    )
    assert check(buy(80), LINEAR, state, LIMITS).intent == replace(buy(80), reduce_only=True)
    for position in (-30, -40):  # through zero, and exactly to the other side
        small = replace(state, position_contracts=D(position))
        assert check(buy(80), LINEAR, small, LIMITS).intent == replace(buy(-position), reduce_only=True)


def test_check_reduce_only_still_applies_the_max_order_clip():
    state = replace(CTX, state=TradingState.REDUCE_ONLY, position_contracts=D(500))
    outcome = check(sell(300), LINEAR, state, LIMITS)
    assert outcome.intent == replace(sell(100), reduce_only=True)
    assert outcome.notes == ("max_order",)


def test_state_machine_moves_to_reduce_only_on_a_position_or_daily_breach():
    for breach in ("max_position", "max_daily_traded"):
        machine = StateMachine().observe(frozenset({breach, "max_order"}), T0, CLEAR_SECS)
        assert machine.state is TradingState.REDUCE_ONLY
        assert machine.cause == breach


def test_state_machine_ignores_notes_that_are_not_breaches():
    machine = StateMachine().observe(frozenset({"max_order", "stale_price"}), T0, CLEAR_SECS)
    assert machine.state is TradingState.ACTIVE


def test_state_machine_returns_to_active_only_after_the_breach_has_cleared_for_a_while():
    machine = StateMachine().observe(frozenset({"max_position"}), T0, CLEAR_SECS)
    clear = frozenset[str]()
    t1 = T0 + timedelta(seconds=10)
    machine = machine.observe(clear, t1, CLEAR_SECS)
    assert machine.state is TradingState.REDUCE_ONLY
    machine = machine.observe(clear, t1 + timedelta(seconds=CLEAR_SECS - 1), CLEAR_SECS)
    assert machine.state is TradingState.REDUCE_ONLY
    machine = machine.observe(clear, t1 + timedelta(seconds=CLEAR_SECS), CLEAR_SECS)
    assert machine.state is TradingState.ACTIVE
    assert machine.cause == ""


def test_state_machine_rebreach_restarts_the_clear_timer():
    clear = frozenset[str]()
    machine = StateMachine().observe(frozenset({"max_daily_traded"}), T0, CLEAR_SECS)
    machine = machine.observe(clear, T0 + timedelta(seconds=10), CLEAR_SECS)
    t_rebreach = T0 + timedelta(seconds=200)
    machine = machine.observe(frozenset({"max_position"}), t_rebreach, CLEAR_SECS)
    assert machine.cause == "max_position"
    machine = machine.observe(clear, t_rebreach + timedelta(seconds=50), CLEAR_SECS)
    # 340 s after the first clear observation, but only 100 s after the clear following the re-breach
    machine = machine.observe(clear, T0 + timedelta(seconds=350), CLEAR_SECS)
    assert machine.state is TradingState.REDUCE_ONLY
    machine = machine.observe(clear, t_rebreach + timedelta(seconds=50 + CLEAR_SECS), CLEAR_SECS)
    assert machine.state is TradingState.ACTIVE


def test_state_machine_stays_halted_until_resumed():
    machine = StateMachine().halt("operator")
    assert machine.state is TradingState.HALTED
    assert machine.cause == "operator"
    for seconds in (0, 10_000):
        machine = machine.observe(frozenset(), T0 + timedelta(seconds=seconds), CLEAR_SECS)
        assert machine.state is TradingState.HALTED
    machine = machine.observe(frozenset({"max_position"}), T0, CLEAR_SECS)
    assert machine.state is TradingState.HALTED
    assert machine.resume().state is TradingState.ACTIVE


def test_state_machine_resume_leaves_reduce_only_at_once():
    machine = StateMachine().observe(frozenset({"max_position"}), T0, CLEAR_SECS)
    assert machine.resume() == StateMachine()
