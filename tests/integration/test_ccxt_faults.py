"""Bad answers from the exchange, through the real ccxt/ccxt.pro client against the Bybit emulator on
loopback: malformed account answers are an unreadable account (never an empty one, and the bot holds its
hedge), corrupted websocket frames are skipped while the stream goes on, and a rate-limit refusal's wait
holds every request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
from structlog.testing import capture_logs
from tests.integration.emulator_clients import KEY, adapter
from tests.integration.frozen_emulator import KEY as FROZEN_KEY
from tests.integration.frozen_emulator import SECRET as FROZEN_SECRET
from tests.integration.frozen_emulator import frozen_emulator, sell
from tests.integration.service_harness import RecordingAlerts, journal_for, until

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.adapters.ccxt_parse import QUOTE_MAX_LEAD_SECS
from deltakeeper.bootstrap import build_runner
from deltakeeper.config import Settings
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.orders import Fill, OrderRequest, OrderState, Quote, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.bybit.server import HUB, RunningServer
from deltakeeper.sim.clock import WallClock

STARTING = {"SOL": Decimal(1000), "USDT": Decimal(100000)}
LINEAR = "BTC/USDT:USDT"

pytestmark = pytest.mark.timeout(60)


def set_faults(server: RunningServer, **faults: float) -> None:
    server.venue.faults.config = server.venue.faults.config.updated(faults)


def events(logs: Sequence[Mapping[str, Any]], *names: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] in names]


def corrupted(server: RunningServer) -> int:
    """How many websocket pushes the emulator has sent corrupted."""
    return server.runner.app[HUB].corrupted_pushes


# --- malformed account answers -------------------------------------------------------------------------

async def test_a_malformed_wallet_answer_is_an_unreadable_account(emulator: RunningServer,
                                                                  exchange: CcxtExchange) -> None:
    set_faults(emulator, malformed_wallet=1)
    for _ in range(3):  # no result, a result.list that is not a list, coins without their fields
        with pytest.raises(ExchangeUnavailable):
            await exchange.fetch_account()
    set_faults(emulator, malformed_wallet=0)

    assert (await exchange.fetch_account()).balances == STARTING


async def test_a_malformed_positions_answer_is_an_unreadable_account(emulator: RunningServer,
                                                                     exchange: CcxtExchange) -> None:
    await exchange.place_order(OrderRequest("dkpos1a0", LINEAR, Side.SELL, Decimal("0.01")))
    await until(lambda: any(p.symbol == LINEAR for p in emulator.venue.engine.positions(KEY)), 10, "position")
    set_faults(emulator, malformed_positions=1)
    for _ in range(3):  # no result, a result.list that is not a list, positions without size and side
        with pytest.raises(ExchangeUnavailable):
            await exchange.fetch_account()
    set_faults(emulator, malformed_positions=0)

    [position] = (await exchange.fetch_account()).positions
    assert (position.symbol, position.contracts) == (LINEAR, Decimal("-0.01"))


@pytest.mark.parametrize("fault", ["malformed_wallet", "malformed_positions"])
async def test_the_bot_holds_its_hedge_while_the_account_answers_are_malformed(fault: str,
                                                                               tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}", http_port=0,
                        recompute_secs=0.2)
    async with frozen_emulator() as server:
        sell(server, "linear", "SOLUSDT", "1000")  # the account's 1,000 SOL hedged
        bybit = adapter(server, FROZEN_KEY, FROZEN_SECRET, ccxt_config={"enableRateLimit": False})
        try:
            await bybit.load_instruments()
            async with journal_for(settings) as journal:
                runner = await build_runner(settings, bybit, journal, WallClock(), RecordingAlerts())
                stop = asyncio.Event()
                running = asyncio.create_task(runner.run(stop))
                with capture_logs() as logs:
                    await until(lambda: runner.last_beat is not None and bool(events(logs, "service_started"))
                                and bool(runner.service.state.quotes), 20, "the bot running")
                    beats = runner.last_beat
                    await until(lambda: runner.last_beat != beats, 20, "a decision on the good account")
                    set_faults(server, **{fault: 1})
                    await until(lambda: len(events(logs, "recompute_failed")) >= 5, 20, "5 failed recomputes")
                    account = runner.service.state.account
                    stop.set()
                    await running
        finally:
            await bybit.close()
        trades = [e for e in server.venue.executions(FROZEN_KEY) if e.exec_type == "Trade"]

    assert len({e.order_id for e in trades}) == 1  # the hedge sold before the start, nothing since
    assert account is not None and account.balances["SOL"] == STARTING["SOL"]
    assert [(p.symbol, p.contracts) for p in account.positions] == [("SOL/USDT:USDT", -1000)]
    assert not events(logs, "order_submitted")


# --- corrupted websocket frames ------------------------------------------------------------------------

CORRUPTIONS = ("ws_malformed", "ws_nan_prices", "ws_absurd_ts")
"""Invalid JSON, NaN prices and balances, timestamps of 1e20 ms."""


def sane(quote: Quote, received_at: datetime) -> bool:
    prices = (quote.bid, quote.ask, quote.mark)
    return (all(price.is_finite() and price > 0 for price in prices) and quote.bid <= quote.ask
            and quote.ts <= received_at + timedelta(seconds=QUOTE_MAX_LEAD_SECS))


async def test_corrupted_ticker_frames_are_skipped_and_the_quotes_go_on(emulator: RunningServer,
                                                                        exchange: CcxtExchange) -> None:
    received: list[tuple[Quote, datetime]] = []

    async def consume() -> None:
        async with aclosing(exchange.quotes([LINEAR])) as quotes:
            async for quote in quotes:
                received.append((quote, datetime.now(UTC)))

    with capture_logs() as logs:
        consuming = asyncio.create_task(consume())
        try:
            await until(lambda: bool(received), 20, "a first quote")
            connections = set(emulator.runner.app[HUB].connections)
            for corruption in CORRUPTIONS:
                sent = corrupted(emulator)
                set_faults(emulator, **{corruption: 1})
                await until(lambda n=sent: corrupted(emulator) >= n + 3, 20, f"3 frames of {corruption}")
                set_faults(emulator, **{corruption: 0})
                quoted = len(received)
                await until(lambda q=quoted: len(received) > q + 2, 10, f"quotes after {corruption}")
            still_connected = set(emulator.runner.app[HUB].connections)
        finally:
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)

    assert all(sane(quote, at) for quote, at in received)
    assert not events(logs, "stream_stale", "stream_error")
    assert events(logs, "ws_frame_skipped") and events(logs, "quote_malformed")
    assert connections <= still_connected  # the same websocket all along: no reconnect


async def test_corrupted_private_frames_are_skipped_and_the_account_stream_goes_on(
        emulator: RunningServer, exchange: CcxtExchange) -> None:
    received: list[Any] = []

    async def consume() -> None:
        async with aclosing(exchange.account_events()) as stream:
            async for event in stream:
                received.append(event)

    def filled(client_order_id: str) -> Callable[[], bool]:
        return lambda: any(isinstance(e, Fill) and e.client_order_id == client_order_id for e in received)

    with capture_logs() as logs:
        consuming = asyncio.create_task(consume())
        try:
            await until(lambda: any(isinstance(e, AccountSnapshot) for e in received), 20, "a snapshot")
            await asyncio.sleep(2.5)  # past the subscription's REST catch-up
            for n, corruption in enumerate(CORRUPTIONS):
                sent = corrupted(emulator)
                set_faults(emulator, **{corruption: 1})
                await exchange.place_order(OrderRequest(f"dkbad{n}a0", LINEAR, Side.BUY, Decimal("0.01")))
                await until(lambda s=sent: corrupted(emulator) > s, 10, f"private frames of {corruption}")
                set_faults(emulator, **{corruption: 0})
                await exchange.place_order(OrderRequest(f"dkgood{n}a0", LINEAR, Side.BUY, Decimal("0.01")))
                await until(filled(f"dkgood{n}a0"), 10, f"the fill after {corruption} pushed")
        finally:
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)

    for event in received:
        if isinstance(event, Fill):
            assert event.price.is_finite() and event.price > 0
            assert event.ts < datetime.now(UTC) + timedelta(days=3660)
        if isinstance(event, AccountSnapshot):
            assert all(amount.is_finite() for amount in event.balances.values())
            assert event.balances  # never read as an empty wallet
    assert not events(logs, "stream_stale", "stream_error")


async def test_an_account_push_of_the_wrong_shape_is_skipped_and_the_account_stream_goes_on(
        exchange: CcxtExchange) -> None:
    """ccxt hands on an order whose status is a list and a Bybit balance whose result is not an object (the
    first push of each, before the real ones): each is skipped, the stream reads on."""
    client = exchange._rest
    shapeless = {"watch_orders": [{"id": "1", "status": ["open"], "amount": 1, "type": "limit",
                                   "side": "buy", "symbol": LINEAR}],
                 "watch_balance": {"info": {"result": ["USDT"]}}}

    def first_shapeless(name: str) -> Callable[..., Any]:
        real = getattr(client, name)

        async def watch(*args: Any) -> Any:
            return shapeless.pop(name) if name in shapeless else await real(*args)

        return watch

    for name in list(shapeless):
        setattr(client, name, first_shapeless(name))
    received: list[Any] = []

    async def consume() -> None:
        async with aclosing(exchange.account_events()) as stream:
            async for event in stream:
                received.append(event)

    with capture_logs() as logs:
        consuming = asyncio.create_task(consume())
        try:
            await until(lambda: not shapeless, 20, "the malformed pushes read")
            await asyncio.sleep(2.5)  # past the subscription's REST catch-up
            await exchange.place_order(OrderRequest("dkshape1a0", LINEAR, Side.BUY, Decimal("0.01")))
            await until(lambda: any(isinstance(e, Fill) and e.client_order_id == "dkshape1a0"
                                    for e in received) or consuming.done(), 10, "the fill pushed")
        finally:
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)

    assert any(isinstance(e, Fill) and e.client_order_id == "dkshape1a0" for e in received)
    assert any(isinstance(e, OrderState) and e.client_order_id == "dkshape1a0" for e in received)
    skipped = {entry["stream"] for entry in events(logs, "malformed_message_skipped")}
    assert skipped == {"orders", "balance"}
    assert not events(logs, "stream_error")


async def test_a_push_whose_market_cannot_be_reloaded_is_resynced_and_the_account_stream_goes_on(
        exchange: CcxtExchange) -> None:
    """A push of a market the adapter does not know yet makes it reload the markets; that read fails once
    (a 503): the stream backs off and resyncs by REST, it does not end."""
    client = exchange._rest
    load_markets = client.load_markets
    failing = [ccxt.ExchangeNotAvailable("503 Service Unavailable")]

    async def failing_once(reload: bool = False, *args: Any) -> Any:
        if reload and failing:
            raise failing.pop()
        return await load_markets(reload, *args)

    client.load_markets = failing_once
    received: list[Any] = []

    async def consume() -> None:
        async with aclosing(exchange.account_events()) as stream:
            async for event in stream:
                received.append(event)

    def filled() -> bool:
        return any(isinstance(e, Fill) and e.client_order_id == "dknew1a0" for e in received)

    with capture_logs() as logs:
        consuming = asyncio.create_task(consume())
        try:
            await until(lambda: any(isinstance(e, AccountSnapshot) for e in received), 20, "a snapshot")
            await asyncio.sleep(2.5)  # past the subscription's REST catch-up
            del exchange._instruments[LINEAR]  # a market listed since the adapter last loaded them
            await exchange.place_order(OrderRequest("dknew1a0", LINEAR, Side.BUY, Decimal("0.01")))
            await until(lambda: filled() or consuming.done(), 20, "the fill")
        finally:
            consuming.cancel()
            outcome = await asyncio.gather(consuming, return_exceptions=True)

    assert filled(), outcome
    assert not failing
    assert [e["stage"] for e in events(logs, "stream_error")] == ["convert"]


# --- rate-limit waits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["http_rate_limit", "ip_rate_limit", "rate_limit"])
async def test_a_rate_limit_refusals_wait_holds_every_request(fault: str, emulator: RunningServer,
                                                             exchange: CcxtExchange) -> None:
    arrivals = emulator.venue.rest_arrivals
    before = len(arrivals)
    with capture_logs() as logs:
        set_faults(emulator, **{fault: 1, "retry_after_ms": 1000})
        reading = asyncio.create_task(exchange.fetch_open_orders())
        await until(lambda: len(arrivals) > before, 10, "the request refused")
        refused_at = arrivals[-1]
        set_faults(emulator, **{fault: 0})
        # the refusal read (with the wait held), or the request already asked again
        await until(lambda: bool(events(logs, "rate_limit_pause")) or len(arrivals) > before + 1, 10,
                    "the refusal read")
        public = await exchange.fetch_order_book(LINEAR, 5)  # the public client shares the wait
        await reading
    after = list(arrivals)[before + 1:]

    assert public[0] and public[1]
    assert len(after) >= 2
    assert min(after) >= refused_at + 0.99  # Bybit's reset time counts whole ms
    [pause] = events(logs, "rate_limit_pause")
    assert 0 < pause["wait_secs"] <= 1.0

