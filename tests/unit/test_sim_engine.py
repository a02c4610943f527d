from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.markets import default_instruments

T0 = datetime(2026, 1, 5, 7, 59, tzinfo=UTC)
FUNDING_TIME = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ACCOUNT = "acct"
SPOT = "SOL/USDT"
LINEAR = "SOL/USDT:USDT"
BTC_LINEAR = "BTC/USDT:USDT"
BTC_INVERSE = "BTC/USD:BTC"


def make_engine(balances: dict[str, Decimal], seed: int = 7) -> SimEngine:
    engine = SimEngine(default_instruments(), seed=seed)
    engine.open_account(ACCOUNT, balances)
    return engine


def quote(symbol: str, bid: str, ask: str, ts: datetime = T0, rate: str | None = None,
          mark: str | None = None) -> Quote:
    b, a = Decimal(bid), Decimal(ask)
    return Quote(symbol, b, a, Decimal(mark) if mark else (b + a) / 2, ts,
                 funding_rate=Decimal(rate) if rate else None)


def market(symbol: str, side: Side, amount: str, cid: str = "c1", reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(cid, symbol, side, Decimal(amount), reduce_only=reduce_only)


def limit(symbol: str, side: Side, amount: str, price: str, cid: str = "c1", post_only: bool = False,
          reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(cid, symbol, side, Decimal(amount), OrderType.LIMIT, Decimal(price),
                        reduce_only=reduce_only, post_only=post_only)


def test_market_orders_fill_at_the_touch_and_pay_the_taker_fee_in_the_settle_coin() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    bought = engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "2"), T0)
    sold = engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "2", cid="c2"), T0)

    assert bought.status is OrderStatus.FILLED and bought.average_price == Decimal("100.02")
    assert sold.status is OrderStatus.FILLED and sold.average_price == Decimal("99.98")
    buy_fill, sell_fill = engine.fills(ACCOUNT)
    assert buy_fill.fee == Decimal("0.110022") and buy_fill.fee_currency == "USDT"
    assert sell_fill.fee == Decimal("0.109978") and not sell_fill.is_maker
    assert buy_fill.notional_usd == Decimal("200.04")
    realised = 2 * (Decimal("99.98") - Decimal("100.02"))
    assert engine.balances(ACCOUNT)["USDT"] == 10_000 + realised - buy_fill.fee - sell_fill.fee
    assert engine.positions(ACCOUNT) == []


def test_spot_orders_move_base_and_quote_and_pay_the_fee_in_the_quote_currency() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(SPOT, "99.99", "100.01"))

    engine.place_order(ACCOUNT, market(SPOT, Side.BUY, "10"), T0)

    (fill,) = engine.fills(ACCOUNT)
    assert fill.price == Decimal("100.01") and fill.fee == Decimal("1.0001") and fill.fee_currency == "USDT"
    assert engine.balances(ACCOUNT) == {"USDT": Decimal("8998.8999"), "SOL": Decimal(10)}


def test_large_market_orders_walk_the_synthetic_book() -> None:
    engine = make_engine({"USDT": Decimal(1_000_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    _, asks = engine.book(LINEAR)

    state = engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "600"), T0)

    first, second = engine.fills(ACCOUNT)
    assert (first.price, first.amount_contracts) == asks[0]
    assert second.price == asks[1][0] and second.amount_contracts == 600 - asks[0][1]
    assert state.filled_contracts == 600 and state.average_price is not None
    assert asks[0][0] < state.average_price < asks[1][0]


def test_walking_the_book_can_be_switched_off() -> None:
    engine = make_engine({"USDT": Decimal(1_000_000)})
    engine.walk_depth = False
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "600"), T0)

    assert [f.price for f in engine.fills(ACCOUNT)] == [Decimal("100.02")]


def test_book_is_deterministic_ordered_and_starts_at_the_touch() -> None:
    engine = make_engine({})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    bids, asks = engine.book(LINEAR, depth=5)

    assert (bids, asks) == engine.book(LINEAR, depth=5)
    assert bids[0][0] == Decimal("99.98") and asks[0][0] == Decimal("100.02")
    assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True) and len(bids) == 5
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    assert all(size > 0 and size % Decimal("0.1") == 0 for _, size in bids + asks)
    assert engine.book(SPOT) == ([], [])


def test_linear_position_has_average_entry_unrealised_and_realised_pnl() -> None:
    engine = make_engine({"USDT": Decimal(100_000)})
    engine.walk_depth = False
    engine.on_quote(quote(BTC_LINEAR, "60000", "60000"))
    engine.place_order(ACCOUNT, market(BTC_LINEAR, Side.BUY, "1"), T0)
    engine.on_quote(quote(BTC_LINEAR, "62000", "62000"))
    engine.place_order(ACCOUNT, market(BTC_LINEAR, Side.BUY, "1", cid="c2"), T0)
    engine.on_quote(quote(BTC_LINEAR, "63000", "63000"))

    (position,) = engine.positions(ACCOUNT)
    assert position.contracts == 2 and position.entry_price == 61_000
    assert position.mark_price == 63_000 and position.unrealized_pnl == 4_000

    wallet_before = engine.balances(ACCOUNT)["USDT"]
    engine.place_order(ACCOUNT, market(BTC_LINEAR, Side.SELL, "0.5", cid="c3"), T0)

    fee = engine.fills(ACCOUNT)[-1].fee
    assert engine.balances(ACCOUNT)["USDT"] == wallet_before + Decimal("0.5") * 2_000 - fee
    (position,) = engine.positions(ACCOUNT)
    assert position.contracts == Decimal("1.5") and position.entry_price == 61_000


def test_inverse_round_trip_earns_the_reference_0_45_btc() -> None:
    # REFERENCE 1.2: 10,000 contracts of 1 USD bought at 8,000 and sold at 12,500 earn 0.45 BTC.
    engine = make_engine({"BTC": Decimal(1)})
    engine.on_quote(quote(BTC_INVERSE, "8000", "8000"))
    engine.place_order(ACCOUNT, market(BTC_INVERSE, Side.BUY, "10000"), T0)
    engine.on_quote(quote(BTC_INVERSE, "12500", "12500"))

    (position,) = engine.positions(ACCOUNT)
    assert position.entry_price == 8_000 and position.unrealized_pnl == Decimal("0.45")

    engine.place_order(ACCOUNT, market(BTC_INVERSE, Side.SELL, "10000", cid="c2"), T0)

    open_fill, close_fill = engine.fills(ACCOUNT)
    assert open_fill.fee == Decimal("0.00068750") and open_fill.fee_currency == "BTC"
    assert close_fill.fee == Decimal("0.00044000")
    assert engine.balances(ACCOUNT)["BTC"] == 1 + Decimal("0.45") - open_fill.fee - close_fill.fee
    assert engine.positions(ACCOUNT) == []


def test_inverse_entry_is_the_harmonic_mean_of_the_fill_prices() -> None:
    engine = make_engine({"BTC": Decimal(10)})
    engine.walk_depth = False
    engine.on_quote(quote(BTC_INVERSE, "40000", "40000"))
    engine.place_order(ACCOUNT, market(BTC_INVERSE, Side.SELL, "20000"), T0)
    engine.on_quote(quote(BTC_INVERSE, "60000", "60000"))
    engine.place_order(ACCOUNT, market(BTC_INVERSE, Side.SELL, "20000", cid="c2"), T0)

    (position,) = engine.positions(ACCOUNT)
    assert position.contracts == -40_000 and position.entry_price == 48_000


def _with_long_and_short(symbol: str, amount: str, price: str, balances: dict[str, Decimal]) -> SimEngine:
    engine = SimEngine(default_instruments(), seed=1)
    engine.walk_depth = False
    engine.open_account("long", balances)
    engine.open_account("short", balances)
    engine.on_quote(quote(symbol, price, price))
    engine.place_order("long", market(symbol, Side.BUY, amount), T0)
    engine.place_order("short", market(symbol, Side.SELL, amount), T0)
    return engine


def test_linear_funding_longs_pay_shorts_the_reference_12_usdt() -> None:
    # REFERENCE 2: 2 BTC long linear at mark 60,000, rate 0.01% -> pays 12 USDT.
    engine = _with_long_and_short(BTC_LINEAR, "2", "60000", {"USDT": Decimal(100_000)})
    long_before, short_before = engine.balances("long")["USDT"], engine.balances("short")["USDT"]

    engine.on_quote(quote(BTC_LINEAR, "60000", "60000", ts=FUNDING_TIME, rate="0.0001"))

    (paid,) = engine.funding_payments("long")
    (received,) = engine.funding_payments("short")
    assert paid.amount == Decimal(-12) and paid.currency == "USDT" and paid.ts == FUNDING_TIME
    assert paid.position_contracts == 2 and paid.rate == Decimal("0.0001")
    assert received.amount == Decimal(12)
    assert engine.balances("long")["USDT"] == long_before - 12
    assert engine.balances("short")["USDT"] == short_before + 12


def test_inverse_funding_short_receives_the_reference_amount_in_coin() -> None:
    # REFERENCE 2: 100 contracts x 100 USD short, mark 60,000, rate 0.01% -> receives 1.6667e-05 BTC.
    instruments = default_instruments()
    instruments[BTC_INVERSE] = replace(instruments[BTC_INVERSE], contract_size=Decimal(100))
    engine = SimEngine(instruments)
    engine.open_account(ACCOUNT, {"BTC": Decimal(1)})
    engine.on_quote(quote(BTC_INVERSE, "60000", "60000"))
    engine.place_order(ACCOUNT, market(BTC_INVERSE, Side.SELL, "100"), T0)
    before = engine.balances(ACCOUNT)["BTC"]

    engine.on_quote(quote(BTC_INVERSE, "60000", "60000", ts=FUNDING_TIME, rate="0.0001"))

    (payment,) = engine.funding_payments(ACCOUNT)
    assert payment.amount == Decimal("0.00001667") and payment.currency == "BTC"
    assert abs(payment.amount - Decimal("1.6667e-05")) < Decimal("1e-8")
    assert engine.balances(ACCOUNT)["BTC"] == before + payment.amount


def test_funding_settles_once_per_boundary_at_the_default_rate_when_the_quote_has_none() -> None:
    engine = _with_long_and_short(LINEAR, "10", "100", {"USDT": Decimal(100_000)})

    engine.on_quote(quote(LINEAR, "100", "100", ts=T0 + timedelta(seconds=30)))
    assert engine.funding_payments("long") == []
    engine.on_quote(quote(LINEAR, "100", "100", ts=FUNDING_TIME + timedelta(seconds=10)))
    engine.on_quote(quote(LINEAR, "100", "100", ts=FUNDING_TIME + timedelta(seconds=20)))

    (payment,) = engine.funding_payments("long")
    assert payment.rate == engine.default_funding_rate and payment.amount == Decimal("-0.1")
    assert engine.funding_payments("long", since=FUNDING_TIME + timedelta(seconds=1)) == []


def test_post_only_order_that_would_take_is_rejected_and_one_that_would_not_rests() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    with pytest.raises(OrderRejected, match="post-only"):
        engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "100.02", post_only=True), T0)
    resting = engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "100.01", post_only=True), T0)

    assert resting.status is OrderStatus.OPEN and engine.open_orders(ACCOUNT) == [resting]


def test_resting_limit_order_fills_at_its_price_as_maker_when_the_quote_crosses_it() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "99.5"), T0)

    engine.on_quote(quote(LINEAR, "99.6", "99.7", ts=T0 + timedelta(seconds=1)))
    assert engine.fills(ACCOUNT) == []
    engine.on_quote(quote(LINEAR, "99.3", "99.4", ts=T0 + timedelta(seconds=2)))

    (fill,) = engine.fills(ACCOUNT)
    assert fill.price == Decimal("99.5") and fill.is_maker and fill.fee == Decimal("0.0199")
    assert engine.order(ACCOUNT, client_order_id="c1") == engine.orders(ACCOUNT)[0]
    assert engine.orders(ACCOUNT)[0].status is OrderStatus.FILLED


def test_marketable_limit_order_takes_up_to_its_price_and_rests_the_rest() -> None:
    engine = make_engine({"USDT": Decimal(1_000_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    _, asks = engine.book(LINEAR)

    state = engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1000", str(asks[0][0])), T0)

    assert state.status is OrderStatus.PARTIALLY_FILLED and state.filled_contracts == asks[0][1]
    assert not engine.fills(ACCOUNT)[0].is_maker


def test_reduce_only_order_that_would_grow_the_position_is_rejected() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    with pytest.raises(OrderRejected, match="increase"):
        engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "1", reduce_only=True), T0)
    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "2"), T0)
    with pytest.raises(OrderRejected, match="increase"):
        engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid="c2", reduce_only=True), T0)
    with pytest.raises(OrderRejected, match="exceeds"):
        engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "3", cid="c2", reduce_only=True), T0)

    reduced = engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "1.5", cid="c2", reduce_only=True), T0)
    assert reduced.status is OrderStatus.FILLED
    assert engine.positions(ACCOUNT)[0].contracts == Decimal("0.5")


def test_resting_reduce_only_order_is_cancelled_when_the_position_is_gone() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1"), T0)
    engine.place_order(ACCOUNT, limit(LINEAR, Side.SELL, "1", "101", cid="c2", reduce_only=True), T0)
    engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "1", cid="c3"), T0)

    engine.on_quote(quote(LINEAR, "101.5", "101.6", ts=T0 + timedelta(seconds=1)))

    state = engine.order(ACCOUNT, client_order_id="c2")
    assert state is not None and state.status is OrderStatus.CANCELED and state.filled_contracts == 0
    assert engine.positions(ACCOUNT) == []


def test_partial_fill_fault_fills_a_fraction_now_and_the_rest_on_the_next_quote() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.faults.partial_fill_fraction = Decimal("0.3")
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    state = engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "10"), T0)
    assert state.status is OrderStatus.PARTIALLY_FILLED and state.filled_contracts == 3

    engine.on_quote(quote(LINEAR, "100.98", "101.02", ts=T0 + timedelta(seconds=1)))

    final = engine.order(ACCOUNT, exchange_order_id=state.exchange_order_id)
    assert final is not None and final.status is OrderStatus.FILLED and final.filled_contracts == 10
    assert [f.price for f in engine.fills(ACCOUNT)] == [Decimal("100.02"), Decimal("101.02")]


def test_delayed_fill_fault_rests_market_orders_until_the_next_quote() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.faults.delay_market_fills = True
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))

    state = engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "1"), T0)
    assert state.status is OrderStatus.OPEN and engine.fills(ACCOUNT) == []

    engine.on_quote(quote(LINEAR, "98.98", "99.02", ts=T0 + timedelta(seconds=1)))

    (fill,) = engine.fills(ACCOUNT)
    assert fill.price == Decimal("98.98") and fill.ts == T0 + timedelta(seconds=1)


def test_insufficient_balance_switch_rejects_every_new_order() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    engine.faults.reject_insufficient_balance = True

    with pytest.raises(OrderRejected, match="insufficient balance"):
        engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1"), T0)
    assert engine.orders(ACCOUNT) == []


def test_spot_orders_need_free_balance_net_of_open_orders() -> None:
    engine = make_engine({"USDT": Decimal(1_000), "SOL": Decimal(10)})
    engine.on_quote(quote(SPOT, "99.99", "100.01"))

    with pytest.raises(OrderRejected, match="insufficient balance: USDT"):
        engine.place_order(ACCOUNT, market(SPOT, Side.BUY, "10"), T0)
    with pytest.raises(OrderRejected, match="insufficient balance: SOL"):
        engine.place_order(ACCOUNT, market(SPOT, Side.SELL, "10.001"), T0)
    engine.place_order(ACCOUNT, limit(SPOT, Side.SELL, "8", "110"), T0)
    with pytest.raises(OrderRejected, match="insufficient balance: SOL"):
        engine.place_order(ACCOUNT, market(SPOT, Side.SELL, "3", cid="c2"), T0)


def test_derivative_orders_need_initial_margin_at_the_leverage_but_reductions_do_not() -> None:
    engine = make_engine({"USDT": Decimal(1_000)})
    engine.on_quote(quote(LINEAR, "100", "100"))

    with pytest.raises(OrderRejected, match="insufficient margin"):
        engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "100"), T0)
    engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "99"), T0)
    engine.adjust_balance(ACCOUNT, "USDT", Decimal(-900), T0)

    closed = engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "99", cid="c2"), T0)
    assert closed.status is OrderStatus.FILLED


def test_duplicate_open_client_order_id_is_rejected_but_reusable_once_final() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    first = engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "90"), T0)

    with pytest.raises(OrderRejected, match="duplicate"):
        engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "91"), T0)
    engine.cancel_order(ACCOUNT, LINEAR, T0, client_order_id="c1")
    second = engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "92"), T0)

    latest = engine.order(ACCOUNT, client_order_id="c1")
    assert latest is not None and latest.exchange_order_id == second.exchange_order_id
    earlier = engine.order(ACCOUNT, exchange_order_id=first.exchange_order_id)
    assert earlier is not None and earlier.status is OrderStatus.CANCELED


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (market("DOGE/USDT", Side.BUY, "1"), "unknown market"),
        (market(LINEAR, Side.BUY, "0.05"), "lot step"),
        (market(LINEAR, Side.BUY, "0"), "positive"),
        (OrderRequest("c1", LINEAR, Side.BUY, Decimal(1), OrderType.LIMIT), "price"),
        (OrderRequest("c1", LINEAR, Side.BUY, Decimal(1), post_only=True), "post-only"),
        (market(SPOT, Side.BUY, "0.01"), "notional"),
        (market(SPOT, Side.BUY, "1", reduce_only=True), "derivatives"),
    ],
)
def test_bad_requests_are_rejected_with_a_reason(request_: OrderRequest, reason: str) -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    engine.on_quote(quote(SPOT, "99.98", "100.02"))

    with pytest.raises(OrderRejected, match=reason):
        engine.place_order(ACCOUNT, request_, T0)


def test_cancel_rejects_unknown_or_final_orders_and_cancel_all_filters_by_symbol() -> None:
    engine = make_engine({"USDT": Decimal(10_000), "SOL": Decimal(10)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    engine.on_quote(quote(SPOT, "99.98", "100.02"))
    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid="done"), T0)
    engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "90", cid="p1"), T0)
    engine.place_order(ACCOUNT, limit(SPOT, Side.SELL, "1", "110", cid="s1"), T0)

    with pytest.raises(OrderRejected, match="unknown"):
        engine.cancel_order(ACCOUNT, LINEAR, T0, client_order_id="nope")
    with pytest.raises(OrderRejected, match="already filled"):
        engine.cancel_order(ACCOUNT, LINEAR, T0, client_order_id="done")
    cancelled = engine.cancel_all(ACCOUNT, LINEAR, T0)

    assert [s.client_order_id for s in cancelled] == ["p1"]
    assert [s.client_order_id for s in engine.open_orders(ACCOUNT)] == ["s1"]


def test_listeners_see_fills_order_changes_snapshots_and_quotes() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    events: list[tuple[str, AccountEvent]] = []
    quotes: list[Quote] = []
    engine.subscribe(lambda account_id, event: events.append((account_id, event)))
    engine.subscribe_quotes(quotes.append)
    q = quote(LINEAR, "99.98", "100.02")
    engine.on_quote(q)

    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1"), T0)
    engine.on_quote(quote(LINEAR, "99.98", "100.02", ts=FUNDING_TIME))
    engine.adjust_balance(ACCOUNT, "SOL", Decimal(5), FUNDING_TIME)

    kinds = [type(event) for _, event in events]
    assert kinds == [Fill, OrderState, AccountSnapshot, FundingPayment, AccountSnapshot, AccountSnapshot]
    assert {account_id for account_id, _ in events} == {ACCOUNT}
    assert quotes[0] == q and len(quotes) == 2
    last = events[-1][1]
    assert isinstance(last, AccountSnapshot) and last.balances["SOL"] == 5 and len(last.positions) == 1


def test_ids_are_deterministic_for_a_seed() -> None:
    def trade_ids(seed: int) -> list[str]:
        engine = make_engine({"USDT": Decimal(10_000)}, seed=seed)
        engine.on_quote(quote(LINEAR, "99.98", "100.02"))
        engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1"), T0)
        return [engine.orders(ACCOUNT)[0].exchange_order_id] + [f.trade_id for f in engine.fills(ACCOUNT)]

    assert trade_ids(3) == trade_ids(3)
    assert trade_ids(3) != trade_ids(4)


def test_snapshot_reports_wallet_balances_and_positions_at_the_mark() -> None:
    engine = make_engine({"USDT": Decimal(10_000)})
    engine.on_quote(quote(LINEAR, "100", "100"))
    engine.place_order(ACCOUNT, market(LINEAR, Side.SELL, "10"), T0)
    engine.on_quote(quote(LINEAR, "90", "90", ts=T0 + timedelta(seconds=1)))

    snapshot = engine.snapshot(ACCOUNT, T0 + timedelta(seconds=1))

    fee = engine.fills(ACCOUNT)[0].fee
    assert snapshot.balances == {"USDT": 10_000 - fee}
    (position,) = snapshot.positions
    assert position.mark_price == 90 and position.unrealized_pnl == 100 and position.contracts == -10


def test_history_keeps_open_orders_and_the_newest_closed_orders_fills_and_funding_up_to_the_count() -> None:
    engine = SimEngine(default_instruments(), history_max=3)
    engine.open_account(ACCOUNT, {"USDT": Decimal(1_000_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    resting = engine.place_order(ACCOUNT, limit(LINEAR, Side.BUY, "1", "90", cid="rest"), T0)
    sent = [engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid=f"m{i}"), T0) for i in range(5)]
    boundaries = [FUNDING_TIME + timedelta(hours=8 * i) for i in range(5)]
    for ts in boundaries:
        engine.on_quote(quote(LINEAR, "99.98", "100.02", ts=ts))

    kept = sent[2:]
    assert [o.client_order_id for o in engine.orders(ACCOUNT)] == ["rest", "m2", "m3", "m4"]
    assert engine.order(ACCOUNT, client_order_id="rest") == resting
    assert engine.order(ACCOUNT, client_order_id="m1") is None
    assert engine.order(ACCOUNT, exchange_order_id=sent[1].exchange_order_id) is None
    assert [engine.order(ACCOUNT, client_order_id=o.client_order_id) for o in kept] == kept
    assert [f.client_order_id for f in engine.fills(ACCOUNT)] == ["m2", "m3", "m4"]
    assert [p.ts for p in engine.funding_payments(ACCOUNT)] == boundaries[2:]
    # A client id used again: forgetting the older order keeps the newer one's.
    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid="m2"), boundaries[-1])
    reused = engine.order(ACCOUNT, client_order_id="m2")
    assert reused is not None and reused.exchange_order_id != sent[2].exchange_order_id


def test_history_forgets_what_is_older_than_its_window_by_the_newest_time_seen() -> None:
    engine = SimEngine(default_instruments(), history_secs=3600)
    engine.open_account(ACCOUNT, {"USDT": Decimal(1_000_000)})
    engine.on_quote(quote(LINEAR, "99.98", "100.02"))
    old = engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid="old"), T0)
    engine.on_quote(quote(LINEAR, "99.98", "100.02", ts=FUNDING_TIME))
    hour_later = T0 + timedelta(minutes=59)
    engine.on_quote(quote(LINEAR, "99.98", "100.02", ts=hour_later))
    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid="within"), hour_later)

    assert [f.client_order_id for f in engine.fills(ACCOUNT, since=T0)] == ["old", "within"]
    (payment,) = engine.funding_payments(ACCOUNT, since=T0)

    later = FUNDING_TIME + timedelta(hours=1, seconds=1)
    engine.on_quote(quote(LINEAR, "99.98", "100.02", ts=later))
    engine.place_order(ACCOUNT, market(LINEAR, Side.BUY, "1", cid="new"), later)

    assert engine.order(ACCOUNT, exchange_order_id=old.exchange_order_id) is None
    assert [o.client_order_id for o in engine.orders(ACCOUNT)] == ["within", "new"]
    assert [f.client_order_id for f in engine.fills(ACCOUNT, since=T0)] == ["within", "new"]
    assert engine.funding_payments(ACCOUNT, since=T0) == []
    assert payment.ts == FUNDING_TIME


def test_history_must_keep_something() -> None:
    with pytest.raises(ValueError, match="history"):
        SimEngine(default_instruments(), history_max=0)
