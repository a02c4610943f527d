"""The simulator's quarterly futures: listing, pricing with a decaying basis, and settlement at expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.instruments import Kind
from deltakeeper.domain.orders import Fill, OrderRequest, OrderStatus, OrderType, Quote, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.futures import future_fair_price, future_quote, with_future_quotes
from deltakeeper.sim.markets import default_instruments, future_instruments, quarterly_expiries

START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 25, 8, 0, tzinfo=UTC)
MAR = datetime(2027, 3, 26, 8, 0, tzinfo=UTC)
BTC_DEC = "BTC/USDT:USDT-261225"
BTC_DEC_INVERSE = "BTC/USD:BTC-261225"
ACCOUNT = "acct"


def test_the_next_two_quarterly_expiries_are_listed_from_any_date() -> None:
    assert quarterly_expiries(START) == [DEC, MAR]
    assert quarterly_expiries(DEC) == [MAR, datetime(2027, 6, 25, 8, tzinfo=UTC)]  # strictly after


def test_quarterlies_are_linear_on_every_asset_and_inverse_on_btc_and_eth() -> None:
    futures = future_instruments(START)
    assert sorted(futures) == sorted([
        "BTC/USD:BTC-261225", "BTC/USD:BTC-270326", "BTC/USDT:USDT-261225", "BTC/USDT:USDT-270326",
        "ETH/USD:ETH-261225", "ETH/USD:ETH-270326", "ETH/USDT:USDT-261225", "ETH/USDT:USDT-270326",
        "SOL/USDT:USDT-261225", "SOL/USDT:USDT-270326",
    ])
    linear, inverse = futures[BTC_DEC], futures[BTC_DEC_INVERSE]
    assert (linear.kind, linear.expiry, linear.settle, linear.inverse) == (Kind.FUTURE, DEC, "USDT", False)
    assert linear.lot_step_contracts == default_instruments()["BTC/USDT:USDT"].lot_step_contracts
    assert (inverse.settle, inverse.inverse, inverse.contract_size) == ("BTC", True, D(1))
    assert linear.funding_interval_secs is None and inverse.funding_interval_secs is None


def test_the_basis_decays_linearly_to_zero_at_expiry() -> None:
    # 8% a year, 73 days (1/5 of a year) out: 1.6% over spot; half-way, 0.8%; at and after expiry, spot.
    spot = D(60_000)
    assert future_fair_price(spot, DEC, DEC - timedelta(days=73)) == D("60960.00")
    assert future_fair_price(spot, DEC, DEC - timedelta(days=36.5)) == D("60480.00")
    assert future_fair_price(spot, DEC, DEC) == spot
    assert future_fair_price(spot, DEC, DEC + timedelta(hours=1)) == spot


def test_a_future_quote_straddles_its_fair_price_on_the_tick_and_carries_the_index() -> None:
    instrument = future_instruments(START)[BTC_DEC]
    quote = future_quote(instrument, DEC - timedelta(days=73), D(60_000))
    assert (quote.bid, quote.ask, quote.index) == (D("60953.9"), D("60966.1"), D(60_000))
    assert quote.funding_rate is None
    assert quote.mark == D("60960.0")


def test_the_feed_quotes_a_future_until_its_expiry_only() -> None:
    futures = {BTC_DEC: future_instruments(START)[BTC_DEC]}
    spot = Quote("BTC/USDT", D(59_999), D(60_001), D(60_000), DEC, index=D(60_000))
    before = DEC - timedelta(seconds=30)
    feed = iter([(before, [spot]), (DEC, [spot])])
    steps = list(with_future_quotes(feed, futures))
    assert [q.symbol for q in steps[0][1]] == ["BTC/USDT", BTC_DEC]
    assert [q.symbol for q in steps[1][1]] == ["BTC/USDT"]


def engine_with(balances: dict[str, D]) -> SimEngine:
    engine = SimEngine({**default_instruments(), **future_instruments(START)}, seed=3)
    engine.open_account(ACCOUNT, balances)
    return engine


def spot_quote(price: str, ts: datetime) -> Quote:
    p = D(price)
    return Quote("BTC/USDT", p - 1, p + 1, p, ts, index=p)


def fut_quote(symbol: str, bid: str, ask: str, ts: datetime, index: str) -> Quote:
    b, a = D(bid), D(ask)
    return Quote(symbol, b, a, (b + a) / 2, ts, index=D(index))


def sell(symbol: str, amount: str, cid: str) -> OrderRequest:
    return OrderRequest(cid, symbol, Side.SELL, D(amount))


def test_a_linear_future_settles_at_the_underlying_at_expiry_and_then_refuses_orders() -> None:
    engine = engine_with({"USDT": D(10_000)})
    events: list[object] = []
    engine.subscribe(lambda _account, event: events.append(event))
    t = DEC - timedelta(hours=1)
    engine.on_quote(spot_quote("60000", t))
    engine.on_quote(fut_quote(BTC_DEC, "60100", "60110", t, "60000"))
    engine.place_order(ACCOUNT, sell(BTC_DEC, "0.1", "s1"), t)  # short 0.1 at the bid, 60,100
    fee = D("0.1") * D(60_100) * D("0.00055")
    resting = engine.place_order(ACCOUNT, OrderRequest("l1", BTC_DEC, Side.BUY, D("0.1"), OrderType.LIMIT,
                                                       D(50_000)), t)
    assert engine.balances(ACCOUNT)["USDT"] == D(10_000) - fee
    engine.on_quote(spot_quote("59000", DEC - timedelta(seconds=1)))
    assert engine.positions(ACCOUNT)[0].symbol == BTC_DEC  # not yet

    events.clear()
    engine.on_quote(spot_quote("58000", DEC))  # expiry: settled at the index, 58,000
    assert engine.positions(ACCOUNT) == []
    assert engine.balances(ACCOUNT)["USDT"] == D(10_000) - fee + D("0.1") * (D(60_100) - D(58_000))
    cancelled = engine.order(ACCOUNT, exchange_order_id=resting.exchange_order_id)
    assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
    assert cancelled.reject_reason == "expired"
    assert any(isinstance(e, AccountSnapshot) and not e.positions for e in events)
    [delivery] = [e for e in events if isinstance(e, Fill)]  # as Bybit's Delivery execution
    assert (delivery.symbol, delivery.side, delivery.amount_contracts, delivery.price) == (
        BTC_DEC, Side.BUY, D("0.1"), D(58_000))
    assert (delivery.fee, delivery.client_order_id, delivery.liquidation) == (0, None, False)
    assert delivery.ts == DEC
    assert delivery.notional_usd == D(5_800)
    assert delivery in engine.fills(ACCOUNT, DEC - timedelta(hours=2))
    with pytest.raises(OrderRejected, match="expired"):
        engine.place_order(ACCOUNT, sell(BTC_DEC, "0.1", "s2"), DEC + timedelta(seconds=1))


def test_an_inverse_future_settles_its_pnl_in_coin() -> None:
    engine = engine_with({"BTC": D(1)})
    t = DEC - timedelta(hours=1)
    engine.on_quote(spot_quote("50000", t))
    engine.on_quote(fut_quote(BTC_DEC_INVERSE, "50000", "50010", t, "50000"))
    engine.place_order(ACCOUNT, sell(BTC_DEC_INVERSE, "10000", "s1"), t)  # short 10,000 USD at 50,000
    fee = (D(10_000) / D(50_000) * D("0.00055")).quantize(D("1E-8"))
    engine.on_quote(spot_quote("40000", DEC + timedelta(minutes=5)))
    assert engine.positions(ACCOUNT) == []
    # a short 10,000 USD face gains 10,000 x (1/40,000 - 1/50,000) = 0.05 BTC as the price falls
    assert engine.balances(ACCOUNT)["BTC"] == D(1) - fee + D("0.05")
