from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from deltakeeper.domain.errors import ExchangeUnavailable, OrderRejected
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
from deltakeeper.ports import AccountEvent, Exchange
from deltakeeper.sim import gateway as gateway_module
from deltakeeper.sim.clock import SimClock, WallClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import Bar, Feed, replay_feed, synthetic_feed
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams, inventory_changes

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
ACCOUNT = "sim"
LINEAR = "SOL/USDT:USDT"
E = TypeVar("E")


def make_gateway(feed: Feed, speed: float = math.inf, scenario: InventoryScenario | None = None,
                 balances: dict[str, Decimal] | None = None) -> SimGateway:
    engine = SimEngine(default_instruments(), seed=1)
    if balances is not None:
        engine.open_account(ACCOUNT, balances)
    return SimGateway(engine, feed, SimClock(speed, anchor_sim=START), scenario, ACCOUNT)


def sol_feed(tick_secs: int = 60) -> Feed:
    return synthetic_feed(start=START, price=100.0, tick_secs=tick_secs, seed=2)


async def next_of(stream: AsyncIterator[Any], kind: type[E], limit: int = 10_000) -> E:
    async with asyncio.timeout(3):
        for _ in range(limit):
            item = await anext(stream)
            if isinstance(item, kind):
                return item
    raise AssertionError(f"no {kind.__name__} in {limit} items")


async def test_quotes_arrive_in_time_order_and_the_clock_follows_them() -> None:
    gateway = make_gateway(sol_feed())
    exchange: Exchange = gateway

    quotes = exchange.quotes([LINEAR])
    received = [await next_of(quotes, Quote) for _ in range(5)]

    assert [q.symbol for q in received] == [LINEAR] * 5
    assert [q.ts for q in received] == [START + timedelta(minutes=k) for k in range(5)]
    assert gateway.clock.now() >= received[-1].ts
    await exchange.close()


async def test_market_order_fill_order_update_and_snapshot_arrive_on_account_events() -> None:
    gateway = make_gateway(sol_feed(), balances={"USDT": Decimal(10_000)})
    events = gateway.account_events()
    await next_of(gateway.quotes([LINEAR]), Quote)

    state = await gateway.place_order(OrderRequest("dk1a0", LINEAR, Side.BUY, Decimal(2)))

    fill = await next_of(events, Fill)
    update = await next_of(events, OrderState)
    snapshot = await next_of(events, AccountSnapshot)
    assert state.status is OrderStatus.FILLED and fill.client_order_id == "dk1a0"
    assert update.status is OrderStatus.FILLED and update.filled_contracts == 2
    assert snapshot.positions[0].symbol == LINEAR and snapshot.positions[0].contracts == 2
    assert (await gateway.fetch_account()).balances["USDT"] == Decimal(10_000) - fill.fee
    await gateway.close()


async def test_funding_payment_arrives_after_an_interval_at_high_speed() -> None:
    gateway = make_gateway(sol_feed(), speed=1_000_000, balances={"USDT": Decimal(10_000)})
    events = gateway.account_events()
    await next_of(gateway.quotes([LINEAR]), Quote)
    await gateway.place_order(OrderRequest("dk1a0", LINEAR, Side.SELL, Decimal(10)))

    payment = await next_of(events, FundingPayment)

    assert payment.ts == START + timedelta(hours=8) and payment.amount > 0
    assert payment.rate == gateway.engine.default_funding_rate and payment.position_contracts == -10
    assert gateway.clock.now() >= payment.ts
    assert await gateway.fetch_funding_payments(START) == [payment]
    await gateway.close()


async def test_orders_can_be_fetched_and_cancelled_by_client_order_id() -> None:
    gateway = make_gateway(sol_feed(), balances={"USDT": Decimal(10_000)})
    await next_of(gateway.quotes([LINEAR]), Quote)
    request = OrderRequest("dk2a0", LINEAR, Side.BUY, Decimal(1), OrderType.LIMIT, Decimal(50))

    placed = await gateway.place_order(request)
    assert await gateway.fetch_open_orders() == [placed]
    await gateway.cancel_order(LINEAR, "dk2a0")

    fetched = await gateway.fetch_order(LINEAR, "dk2a0")
    assert fetched is not None and fetched.status is OrderStatus.CANCELED
    assert await gateway.fetch_order("SOL/USDT", "dk2a0") is None
    assert await gateway.fetch_open_orders() == []
    with pytest.raises(OrderRejected):
        await gateway.cancel_order(LINEAR, "dk2a0")
    await gateway.close()


async def test_scenario_moves_spot_holdings_against_usdt_at_the_mid() -> None:
    params = ScenarioParams(seed=4)
    gateway = make_gateway(sol_feed(tick_secs=10), scenario=InventoryScenario(params))
    assert await gateway.load_instruments() == gateway.engine.instruments

    async with asyncio.timeout(3):
        async for quote in gateway.quotes([LINEAR]):
            if quote.ts >= START + timedelta(hours=1):
                break
    await gateway.close()

    balances = gateway.engine.balances(ACCOUNT)
    changes = inventory_changes(params)
    expected_sol = Decimal(1_000) + sum(next(changes) for _ in range(12))
    assert balances["SOL"] == expected_sol != 1_000
    moved_usd = (Decimal(100_000) - balances["USDT"]) / (balances["SOL"] - 1_000)
    assert Decimal(90) < moved_usd < Decimal(110)


async def test_streams_end_when_the_feed_ends() -> None:
    bars = [Bar(START, 100.0, 101.0, 99.0, 100.5)]
    gateway = make_gateway(replay_feed(bars, tick_secs=600))
    quotes = gateway.quotes([LINEAR])
    events = gateway.account_events()

    received = [quote async for quote in quotes]

    assert len(received) == 6 and gateway.feed_done
    assert [event async for event in events] == []
    assert [quote async for quote in gateway.quotes([])] != []
    await gateway.close()


async def test_a_slow_quote_reader_gets_the_latest_quote_per_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "QUOTE_QUEUE_SIZE", 4)
    bars = [Bar(START, 100.0, 101.0, 99.0, 100.5)]
    gateway = make_gateway(replay_feed(bars, tick_secs=60))
    quotes = gateway.quotes([])

    async with asyncio.timeout(3):
        await gateway.join()
    received = [quote async for quote in quotes]

    assert len(received) <= 4
    latest = {q.symbol: q for q in received}
    assert all(latest[symbol] == gateway.engine.quote(symbol) for symbol in latest) and len(latest) == 3
    await gateway.close()


async def test_an_account_event_reader_that_falls_behind_gets_exchange_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_module, "EVENT_QUEUE_SIZE", 2)
    gateway = make_gateway(sol_feed(), balances={"USDT": Decimal(10_000)})
    events: AsyncIterator[AccountEvent] = gateway.account_events()
    await next_of(gateway.quotes([LINEAR]), Quote)
    await gateway.place_order(OrderRequest("dk3a0", LINEAR, Side.BUY, Decimal(1)))

    assert isinstance(await anext(events), Fill)
    assert isinstance(await anext(events), OrderState)
    with pytest.raises(ExchangeUnavailable):
        await anext(events)
    await gateway.close()


def test_sim_clock_runs_speed_times_faster_than_the_wall_and_never_goes_back() -> None:
    wall = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    clock = SimClock(60, wall=lambda: wall[0])
    assert clock.now() == wall[0]

    wall[0] += timedelta(seconds=10)
    assert clock.now() == datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
    assert clock.wall_secs_until(datetime(2026, 3, 1, 12, 11, tzinfo=UTC)) == 1.0
    clock.advance_to(datetime(2026, 3, 1, 12, 20, tzinfo=UTC))
    assert clock.now() == datetime(2026, 3, 1, 12, 20, tzinfo=UTC)


def test_sim_clock_as_fast_as_possible_stands_still_between_advances() -> None:
    for speed in (0, math.inf):
        clock = SimClock(speed, anchor_sim=START)
        assert clock.now() == START and clock.wall_secs_until(START + timedelta(days=1)) == 0
        clock.advance_to(START + timedelta(hours=1))
        assert clock.now() == START + timedelta(hours=1)
    assert WallClock().now().tzinfo is UTC


async def test_streams_end_with_exchange_unavailable_when_driving_the_feed_fails() -> None:
    bad = Quote("NOPE/USDT", Decimal(1), Decimal(2), Decimal("1.5"), START)
    gateway = make_gateway(iter([(START, [bad])]))
    events = gateway.account_events()

    await gateway.join()

    with pytest.raises(ExchangeUnavailable, match="NOPE/USDT"):
        await anext(events)
    with pytest.raises(ExchangeUnavailable):
        await anext(gateway.quotes([LINEAR]))
    await gateway.close()
