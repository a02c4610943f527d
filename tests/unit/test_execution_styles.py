"""Execution styles and slicing (app/execution.py): how a checked hedge is split into orders, pure."""

from decimal import Decimal as D

from deltakeeper.app.execution import (
    MAX_SLICES,
    ExecutionOptions,
    ExecutionStyle,
    max_contracts_for_usd,
    max_contracts_within_slippage,
    min_slice_contracts,
    plan_execution,
    slippage_bps,
    split_contracts,
    touch_price,
)
from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import OrderType, Side, client_order_id

PERP = Instrument(
    "SOL/USDT:USDT", Kind.PERPETUAL, "SOL", "USDT", "USDT", lot_step_contracts=D("0.1"),
    min_contracts=D("0.1"), min_notional_usd=D(5),
)
INVERSE = Instrument(
    "BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True, contract_size=D(1),
    lot_step_contracts=D(1), min_contracts=D(1),
)
ASKS = [BookLevel(D(100), D(1)), BookLevel(D(101), D(1)), BookLevel(D(102), D(2))]


def test_split_is_the_fewest_slices_under_the_limit_as_even_as_the_lot_step_allows():
    # 1.0 in lots of 0.1 under 0.3 a slice: 4 slices of 3, 3, 2, 2 lots
    assert split_contracts(D("1.0"), D("0.3"), D("0.1"), D("0.1")) == (D("0.3"), D("0.3"), D("0.2"), D("0.2"))
    assert sum(split_contracts(D("12.7"), D("1"), D("0.1"), D("0.1"))) == D("12.7")
    assert max(split_contracts(D("12.7"), D("1"), D("0.1"), D("0.1"))) <= D(1)


def test_no_limit_or_an_order_under_it_is_one_slice():
    assert split_contracts(D("5.5"), None, D("0.1"), D("0.1")) == (D("5.5"),)
    assert split_contracts(D("5.5"), D("10"), D("0.1"), D("0.1")) == (D("5.5"),)


def test_no_slice_falls_below_the_smallest_order_even_when_the_limit_asks_for_it():
    slices = split_contracts(D("1.0"), D("0.1"), D("0.4"), D("0.1"))
    assert slices == (D("0.5"), D("0.5"))
    assert all(s >= D("0.4") for s in slices)
    # smaller than the smallest order altogether: sent as it is (the policy already checked it)
    assert split_contracts(D("0.2"), D("0.1"), D("0.4"), D("0.1")) == (D("0.2"),)


def test_slices_are_capped_at_max_slices():
    slices = split_contracts(D(1000), D(1), D(1), D(1))
    assert len(slices) == MAX_SLICES
    assert sum(slices) == D(1000)


def test_smallest_slice_is_the_minimum_size_or_notional_rounded_up_to_the_lot_step():
    assert min_slice_contracts(PERP, D(100)) == D("0.1")  # 0.1 x 100 = 10 USD >= 5
    assert min_slice_contracts(PERP, D(20)) == D("0.3")  # 5 / 20 = 0.25 -> 0.3
    assert max_contracts_for_usd(PERP, D(150), D(1000)) == D("6.6")  # 1000 / 150 = 6.67 -> 6.6 down
    assert max_contracts_for_usd(INVERSE, D(60_000), D(250)) == D(250)  # inverse: USD face per contract


def test_slippage_is_the_book_walk_average_against_the_touch():
    # 2 coins: (100 + 101) / 2 = 100.5, 50 bp above the touch; 3 coins: (100 + 101 + 102) / 3 = 101 -> 100 bp
    assert slippage_bps(ASKS, D(1)) == 0
    assert slippage_bps(ASKS, D(2)) == D(50)
    assert slippage_bps(ASKS, D(3)) == D(100)
    assert slippage_bps(ASKS, D(5)) is None  # the visible book holds 4


def test_largest_slice_within_the_slippage_limit_walks_the_book_no_further():
    assert max_contracts_within_slippage(PERP, ASKS, D(50), D(100)) == D(2)
    assert max_contracts_within_slippage(PERP, ASKS, D(49), D(100)) == D("1.9")  # 1.9: 47.4 bp; 2.0: 50 bp
    assert max_contracts_within_slippage(PERP, ASKS, D(1000), D("2.5")) == D("2.5")  # never above the order
    assert max_contracts_within_slippage(PERP, [], D(50), D(10)) == 0


def test_plan_for_a_plain_market_hedge_is_one_order_with_the_decisions_client_id():
    plan = plan_execution(42, PERP, Side.SELL, D(10), D(100), ExecutionOptions())
    assert plan.slices_contracts == (D(10),) and plan.note == ""
    request = plan.request(0, D(10), D(100))
    assert request.client_order_id == client_order_id(42)
    assert request.order_type is OrderType.MARKET and not request.post_only


def test_plan_slices_by_usd_and_by_slippage_whichever_is_smaller():
    by_usd = plan_execution(7, PERP, Side.BUY, D(10), D(100), ExecutionOptions(slice_max_usd=D(300)))
    assert by_usd.slices_contracts == (D("2.5"),) * 4  # 3 coins a slice at most: 4 slices of 2.5
    assert by_usd.note == "slices=4"
    limits = ExecutionOptions(slice_max_usd=D(300), slice_max_slippage_bps=D(50))
    both = plan_execution(7, PERP, Side.BUY, D(10), D(100), limits, book_side=ASKS)
    assert both.slices_contracts == (D(2),) * 5
    unknown = plan_execution(7, PERP, Side.BUY, D(10), D(100), ExecutionOptions(slice_max_slippage_bps=D(50)))
    assert unknown.slices_contracts == (D(10),) and unknown.note == "book=unavailable"


def test_every_order_of_a_decision_has_its_own_client_id_slice_numbers_in_order():
    plan = plan_execution(123456789, PERP, Side.SELL, D(10), D(100), ExecutionOptions(slice_max_usd=D(300)))
    ids = [plan.request(n, amount, None).client_order_id for n, amount in enumerate(plan.slices_contracts)]
    assert ids == [client_order_id(123456789, 0, n) for n in range(4)]
    assert len(set(ids)) == 4


def test_post_only_rests_at_the_touch_and_its_fallback_is_a_market_order():
    assert touch_price(Side.BUY, D(99), D(101)) == D(99)
    assert touch_price(Side.SELL, D(99), D(101)) == D(101)
    options = ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=3)
    plan = plan_execution(9, PERP, Side.BUY, D(5), D(101), options)
    assert plan.note == "execution=post-only timeout_secs=3"
    limit = plan.request(0, D(5), D(99))
    assert (limit.order_type, limit.price, limit.post_only) == (OrderType.LIMIT, D(99), True)
    fallback = plan.request(1, D(2), D(99), fallback=True)
    assert (fallback.order_type, fallback.price, fallback.post_only) == (OrderType.MARKET, None, False)
    assert fallback.client_order_id != limit.client_order_id
