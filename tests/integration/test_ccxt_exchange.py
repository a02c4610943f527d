"""The ccxt adapter through the real ccxt/ccxt.pro client (REST and websockets) against the emulator on
loopback, in process: its Bybit dialect, and for the venue-neutral tests its Binance USD-M dialect too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import pytest
from structlog.testing import capture_logs
from tests.integration.emulator_clients import DIALECTS, KEY, adapter, exchange_id, start_emulator

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.errors import ConfigError, OrderOutcomeUnknown, OrderRejected, RateLimited
from deltakeeper.domain.instruments import Kind
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderRequest,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.bybit.server import RunningServer
from deltakeeper.sim.clock import WallClock
from deltakeeper.sim.markets import default_instruments

STARTING = {"SOL": Decimal(1000), "USDT": Decimal(100000)}
T = TypeVar("T")

pytestmark = pytest.mark.timeout(90)


async def set_faults(server: RunningServer, **faults: float) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/sim/faults", json=faults) as answer:
            assert answer.status == 200, await answer.text()


async def drop_websockets(server: RunningServer) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/sim/drop-websockets") as answer:
            dropped: int = (await answer.json())["dropped"]
            return dropped


async def first(stream: AsyncIterator[Any], wanted: Callable[[Any], bool], within_secs: float = 20) -> Any:
    async def search() -> Any:
        async for item in stream:
            if wanted(item):
                return item
        raise AssertionError("stream ended")

    return await asyncio.wait_for(search(), within_secs)


def market_buy(client_order_id: str, symbol: str = "BTC/USDT:USDT", amount: str = "0.01") -> OrderRequest:
    return OrderRequest(client_order_id, symbol, Side.BUY, Decimal(amount))


async def test_instruments_load_for_spot_linear_and_inverse_markets(exchange: CcxtExchange) -> None:
    instruments = await exchange.reload_instruments()
    simulated = default_instruments()

    futures = {s for s, i in instruments.items() if i.kind is Kind.FUTURE}  # see test_bybit_futures.py
    assert futures and set(instruments) - futures == set(simulated)
    for symbol in ("BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"):
        ours, theirs = instruments[symbol], simulated[symbol]
        assert (ours.kind, ours.inverse, ours.settle) == (theirs.kind, theirs.inverse, theirs.settle)
        assert ours.contract_size == theirs.contract_size
        assert ours.lot_step_contracts == theirs.lot_step_contracts
        assert ours.min_contracts == theirs.min_contracts
    assert instruments["BTC/USDT:USDT"].funding_interval_secs == 8 * 3600
    assert instruments["BTC/USDT"].kind is Kind.SPOT


async def test_account_holds_wallet_balances_and_positions(exchange: CcxtExchange) -> None:
    before = await exchange.fetch_account()
    await exchange.place_order(market_buy("dkacct1a0"))
    [fill] = await wait_for_fills(exchange, "dkacct1a0")
    after = await exchange.fetch_account()

    assert before.balances == STARTING
    assert before.positions == ()
    [position] = after.positions
    assert (position.symbol, position.contracts) == ("BTC/USDT:USDT", Decimal("0.01"))
    assert position.unrealized_pnl is not None
    assert after.balances["USDT"] == STARTING["USDT"] - fill.fee  # wallet: the fee, not the open PnL


async def test_a_balance_push_never_brings_back_positions_older_than_the_last_account_read(
        exchange: CcxtExchange) -> None:
    """After a fill the order path reads the account (REST); the wallet push of that fill then comes in
    before the position push. The snapshot the wallet push makes must hold the position read, not the
    position before the fill: the bot would hedge the same delta again."""
    client = exchange._rest
    open_gates = {name: asyncio.Event() for name in ("watch_balance", "watch_positions")}
    held: dict[str, bool] = {}

    def gated(name: str) -> Callable[..., Any]:
        real = getattr(client, name)

        async def watch(*args: Any) -> Any:
            pushed = await real(*args)
            held[name] = True
            await open_gates[name].wait()
            held.pop(name)
            return pushed

        return watch

    for name, gate in open_gates.items():
        setattr(client, name, gated(name))
        gate.set()
    state = MarketState(await exchange.load_instruments())
    snapshots: list[AccountSnapshot] = []

    async def consume() -> None:
        async with aclosing(exchange.account_events()) as stream:
            async for event in stream:
                if isinstance(event, AccountSnapshot):
                    snapshots.append(event)
                    state.on_account(event)

    consuming = asyncio.create_task(consume())
    try:
        await until(lambda: bool(snapshots), "the first snapshot")
        await asyncio.sleep(2.5)  # past the subscription's REST catch-up
        for gate in open_gates.values():
            gate.clear()  # the next push of each is held
        await exchange.place_order(OrderRequest("dkread1a0", "BTC/USDT:USDT", Side.SELL, Decimal("0.01")))
        await until(lambda: len(held) == 2, "the fill's wallet and position pushes")
        state.on_account(await exchange.fetch_account())  # the order path's read after the fill
        read = state.position_contracts("BTC/USDT:USDT")
        seen = len(snapshots)
        open_gates["watch_balance"].set()  # the wallet push first, the position push still on its way
        await until(lambda: len(snapshots) > seen, "the wallet push's snapshot")
        after_wallet_push = state.position_contracts("BTC/USDT:USDT")
    finally:
        for gate in open_gates.values():
            gate.set()
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)

    assert read == Decimal("-0.01")
    assert after_wallet_push == Decimal("-0.01")


async def until(condition: Callable[[], bool], what: str, within_secs: float = 20) -> None:
    deadline = time.monotonic() + within_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def wait_for_fills(exchange: CcxtExchange, client_order_id: str) -> list[Fill]:
    since = datetime.now(UTC) - timedelta(days=1)
    for _ in range(50):
        fills = [fill for fill in await exchange.fetch_fills(since)
                 if fill.client_order_id == client_order_id]
        if fills:
            return fills
        await asyncio.sleep(0.1)
    raise AssertionError(f"no fill for {client_order_id}")


async def test_quotes_stream_for_spot_linear_and_inverse(exchange: CcxtExchange) -> None:
    symbols = {"BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"}
    seen: dict[str, Quote] = {}

    async with aclosing(exchange.quotes(sorted(symbols))) as quotes:
        await first(quotes, lambda quote: seen.setdefault(quote.symbol, quote) and set(seen) == symbols)

    for quote in seen.values():
        assert 0 < quote.bid <= quote.ask
        assert quote.bid <= quote.mark * Decimal("1.01") and quote.mark <= quote.ask * Decimal("1.01")
    assert seen["BTC/USDT:USDT"].funding_rate is not None


@pytest.mark.parametrize(("symbol", "side", "amount", "notional"), [
    ("BTC/USDT", Side.BUY, "0.001", lambda fill: fill.amount_contracts * fill.price),
    ("BTC/USDT:USDT", Side.BUY, "0.01", lambda fill: fill.amount_contracts * fill.price),
    ("SOL/USD:SOL", Side.SELL, "100", lambda fill: fill.amount_contracts),
])
async def test_market_order_fill_arrives_on_the_stream_and_by_rest_with_the_same_trade_id(
        exchange: CcxtExchange, symbol: str, side: Side, amount: str, notional: Callable[[Fill], Decimal]
) -> None:
    async with aclosing(exchange.account_events()) as events:
        await first(events, lambda event: isinstance(event, AccountSnapshot))
        placed = await exchange.place_order(OrderRequest("dkfill1a0", symbol, side, Decimal(amount)))
        pushed = await first(events, lambda event: isinstance(event, Fill))

    [fetched] = await wait_for_fills(exchange, "dkfill1a0")
    assert placed.status is OrderStatus.OPEN
    assert pushed == fetched
    assert (pushed.symbol, pushed.side, pushed.amount_contracts) == (symbol, side, Decimal(amount))
    assert (pushed.client_order_id, pushed.exchange_order_id) == ("dkfill1a0", placed.exchange_order_id)
    assert pushed.notional_usd == notional(pushed)


@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)
async def test_resting_orders_are_listed_and_cancelled_by_client_order_id(exchange: CcxtExchange) -> None:
    async with aclosing(exchange.quotes(["BTC/USDT:USDT"])) as quotes:
        quote = await first(quotes, lambda quote: True)
    low = (quote.bid * Decimal("0.8")).quantize(Decimal("0.1"))
    for client_order_id in ("dkrest1a0", "dkrest2a0"):
        await exchange.place_order(OrderRequest(client_order_id, "BTC/USDT:USDT", Side.BUY, Decimal("0.01"),
                                                OrderType.LIMIT, price=low, post_only=True))

    listed = {order.client_order_id for order in await exchange.fetch_open_orders()}
    await exchange.cancel_order("BTC/USDT:USDT", "dkrest1a0")
    one_cancelled = await exchange.fetch_order("BTC/USDT:USDT", "dkrest1a0")
    await exchange.cancel_all_orders()

    assert listed == {"dkrest1a0", "dkrest2a0"}
    assert one_cancelled is not None and one_cancelled.status is OrderStatus.CANCELED
    assert await exchange.fetch_open_orders() == []
    second = await exchange.fetch_order("BTC/USDT:USDT", "dkrest2a0")
    assert second is not None and second.status is OrderStatus.CANCELED


async def test_a_post_only_order_that_would_take_is_looked_up_as_refused(exchange: CcxtExchange) -> None:
    # Bybit accepts it, then cancels it itself: a refusal (the runner falls back to market), not a cancel.
    async with aclosing(exchange.quotes(["BTC/USDT:USDT"])) as quotes:
        quote = await first(quotes, lambda quote: True)
    crossing = (quote.ask * Decimal("1.01")).quantize(Decimal("0.1"))
    await exchange.place_order(OrderRequest("dktake1a0", "BTC/USDT:USDT", Side.BUY, Decimal("0.01"),
                                            OrderType.LIMIT, price=crossing, post_only=True))

    refused = await exchange.fetch_order("BTC/USDT:USDT", "dktake1a0")
    assert refused is not None and refused.status is OrderStatus.REJECTED
    assert refused.reject_reason == "EC_PostOnlyWillTakeLiquidity"


async def test_order_the_account_cannot_afford_is_rejected(exchange: CcxtExchange) -> None:
    with pytest.raises(OrderRejected):
        await exchange.place_order(OrderRequest("dkpoor1a0", "BTC/USD:BTC", Side.SELL, Decimal(100000)))

    assert await exchange.fetch_order("BTC/USD:BTC", "dkpoor1a0") is None


@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)
async def test_rate_limited_placement_is_refused_and_may_be_resent_with_the_same_id(
        emulator: RunningServer, exchange: CcxtExchange) -> None:
    await set_faults(emulator, rate_limit=1)
    with pytest.raises(RateLimited):
        await exchange.place_order(market_buy("dkrate1a0"))
    await set_faults(emulator, rate_limit=0)

    assert await exchange.fetch_order("BTC/USDT:USDT", "dkrate1a0") is None
    placed = await exchange.place_order(market_buy("dkrate1a0"))
    assert placed.client_order_id == "dkrate1a0"


@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)
async def test_timeout_after_acceptance_is_unknown_and_settled_by_client_order_id(
        emulator: RunningServer) -> None:
    bybit = adapter(emulator, request_timeout_secs=1)
    try:
        await bybit.load_instruments()
        await set_faults(emulator, timeout_after_accept=1, hang_ms=3000)
        with pytest.raises(OrderOutcomeUnknown):
            await bybit.place_order(market_buy("dkhang1a0"))
        await set_faults(emulator, timeout_after_accept=0)

        found = await bybit.fetch_order("BTC/USDT:USDT", "dkhang1a0")
    finally:
        await bybit.close()

    assert found is not None
    assert found.client_order_id == "dkhang1a0"
    assert found.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED)


async def test_repeated_client_order_id_is_an_unknown_outcome(exchange: CcxtExchange) -> None:
    await exchange.place_order(market_buy("dktwice1a0"))

    with pytest.raises(OrderOutcomeUnknown):
        await exchange.place_order(market_buy("dktwice1a0"))


async def test_funding_payments_are_signed_from_the_account_view() -> None:
    server = await start_emulator(speed=7200)  # an 8-hour funding interval every 4 seconds
    bybit = adapter(server)
    try:
        await bybit.load_instruments()
        since = datetime.now(UTC) - timedelta(days=1)
        await bybit.place_order(market_buy("dkfund1a0"))
        await bybit.place_order(OrderRequest("dkfund2a0", "SOL/USD:SOL", Side.SELL, Decimal(100)))
        payments: list[FundingPayment] = []
        for _ in range(100):
            payments = await bybit.fetch_funding_payments(since)
            if {payment.symbol for payment in payments} == {"BTC/USDT:USDT", "SOL/USD:SOL"}:
                break
            await asyncio.sleep(0.1)
        recorded = {e.exec_id: e for e in server.venue.executions(KEY) if e.exec_type == "Funding"}
    finally:
        await bybit.close()
        await server.close()

    assert {payment.symbol for payment in payments} == {"BTC/USDT:USDT", "SOL/USD:SOL"}
    for payment in payments:
        execution = recorded[payment.payment_id]
        assert payment.amount == -execution.exec_fee  # Bybit's execFee is positive when paid
        long = payment.position_contracts > 0
        pays = (payment.rate > 0) == long
        assert (payment.amount < 0) == pays or payment.rate == 0
        assert payment.currency == ("USDT" if payment.symbol == "BTC/USDT:USDT" else "SOL")
    assert all(p.position_contracts == Decimal("0.01") for p in payments if p.symbol == "BTC/USDT:USDT")
    assert all(p.position_contracts == -100 for p in payments if p.symbol == "SOL/USD:SOL")


async def test_funding_is_pushed_on_the_account_stream() -> None:
    server = await start_emulator(speed=7200)
    bybit = adapter(server)
    try:
        await bybit.load_instruments()
        await bybit.place_order(market_buy("dkfund3a0"))
        async with aclosing(bybit.account_events()) as events:
            payment = await first(events, lambda event: isinstance(event, FundingPayment))
        recorded = {e.exec_id for e in server.venue.executions(KEY) if e.exec_type == "Funding"}
    finally:
        await bybit.close()
        await server.close()

    assert payment.payment_id in recorded
    assert payment.symbol == "BTC/USDT:USDT"


@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)
async def test_quotes_resume_after_the_websocket_is_dropped(emulator: RunningServer,
                                                           exchange: CcxtExchange) -> None:
    async with aclosing(exchange.quotes(["BTC/USDT:USDT"])) as quotes:
        await first(quotes, lambda quote: True)
        assert await drop_websockets(emulator) >= 1
        dropped_at = datetime.now(UTC)
        resumed = await first(quotes, lambda quote: datetime.now(UTC) > dropped_at + timedelta(seconds=0.5))

    assert resumed.symbol == "BTC/USDT:USDT"


@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)
async def test_account_stream_reconnects_and_delivers_fills_after_a_drop(emulator: RunningServer,
                                                                        exchange: CcxtExchange) -> None:
    async with aclosing(exchange.account_events()) as events:
        await first(events, lambda event: isinstance(event, AccountSnapshot))
        assert await drop_websockets(emulator) >= 1
        await exchange.place_order(market_buy("dkdrop1a0"))
        fill = await first(events, lambda event: isinstance(event, Fill)
                           and event.client_order_id == "dkdrop1a0")

    assert fill.amount_contracts == Decimal("0.01")


async def test_quotes_resume_after_malformed_websocket_messages(emulator: RunningServer) -> None:
    # every frame invalid JSON for longer than the stale time: the adapter skips each, the stream goes
    # stale and its connection is reopened (one bad frame amid good ones: tests/integration/test_ccxt_faults)
    bybit = adapter(emulator, stale_after_secs=1)
    healed_at = [float("inf")]
    try:
        await bybit.load_instruments()
        with capture_logs() as logs:
            async with aclosing(bybit.quotes(["BTC/USDT:USDT"])) as quotes:
                await first(quotes, lambda quote: True)
                await set_faults(emulator, ws_malformed=1)
                waiting = asyncio.create_task(first(quotes, lambda quote: time.monotonic() > healed_at[0]))
                await asyncio.sleep(2.5)
                await set_faults(emulator, ws_malformed=0)
                healed_at[0] = time.monotonic()
                resumed = await waiting
    finally:
        await bybit.close()

    assert 0 < resumed.bid <= resumed.ask
    events = [log["event"] for log in logs]
    assert "stream_stale" in events and "stream_resumed" in events


async def test_without_websockets_quotes_and_account_events_are_polled(emulator: RunningServer) -> None:
    streams = ("watchTickers", "watchTicker", "watchBidsAsks", "watchOrders", "watchMyTrades",
               "watchBalance", "watchPositions")
    bybit = adapter(emulator, poll_interval_secs=0.2, ccxt_config={"has": dict.fromkeys(streams, False)})
    try:
        await bybit.load_instruments()
        async with aclosing(bybit.quotes(["BTC/USDT", "BTC/USDT:USDT"])) as quotes:
            seen: set[str] = set()
            await first(quotes, lambda quote: seen.add(quote.symbol) or len(seen) == 2)
        async with aclosing(bybit.account_events()) as events:
            snapshot = await first(events, lambda event: isinstance(event, AccountSnapshot))
            await bybit.place_order(market_buy("dkpoll1a0"))
            fill = await first(events, lambda event: isinstance(event, Fill))
            websockets = await drop_websockets(emulator)
    finally:
        await bybit.close()

    assert snapshot.balances == STARTING
    assert fill.client_order_id == "dkpoll1a0"
    assert websockets == 0


@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)
async def test_refused_signature_is_a_configuration_error_that_ends_the_account_stream(
        emulator: RunningServer) -> None:
    forged = CcxtExchange(exchange_id(emulator), clock=WallClock(), api_key=KEY, secret="not-the-secret",
                          base_url=emulator.url)
    try:
        with pytest.raises(ConfigError):
            await forged.fetch_account()
        async with aclosing(forged.account_events()) as events:
            with pytest.raises(ConfigError):
                await first(events, lambda event: True)
    finally:
        await forged.close()


async def test_withdrawal_permission_of_the_key_is_reported() -> None:
    for allowed in (False, True):
        server = await start_emulator(allow_withdraw=allowed)
        bybit = adapter(server)
        try:
            assert await bybit.key_can_withdraw() is allowed
        finally:
            await bybit.close()
            await server.close()
