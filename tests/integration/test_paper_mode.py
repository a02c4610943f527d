"""Paper trading (`sim/paper.py`) on the Bybit emulator's public data, read through stock ccxt without a key:
fills against the venue's live book at its fees, funding at the times it announces, and no order on a
quote the adapter refused or on one gone stale. The emulator's own account never sees an order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
from tests.integration.emulator_clients import KEY, SECRET
from tests.integration.service_harness import until

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.errors import ExchangeUnavailable, OrderRejected
from deltakeeper.domain.orders import OrderRequest, Quote, Side
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.clock import WallClock
from deltakeeper.sim.engine_state import WALLET_QUANTUM
from deltakeeper.sim.paper import LIVE_BOOK_DEPTH, PaperGateway

PERP = "SOL/USDT:USDT"
STALE_SECS = 3.0


@asynccontextmanager
async def paper_on_emulator(speed: float, tick_secs: int
                            ) -> AsyncIterator[tuple[RunningServer, PaperGateway]]:
    """The emulator (its inventory scenario off), and a paper account of 100,000 USDT following its SOL
    perpetual's public stream."""
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=speed, seed=7, tick_secs=tick_secs,
                         scenario=False)
    clock = WallClock()
    public = CcxtExchange("bybit", clock=clock, base_url=server.url, backoff_initial_secs=0.05,
                          backoff_max_secs=0.5, rng=random.Random(1))
    paper = PaperGateway(public, clock, {"USDT": Decimal(100_000)}, stale_after_secs=STALE_SECS, seed=1)
    try:
        await paper.load_instruments()
        stream = paper.quotes([PERP])
        await anext(stream)
        yield server, paper
    finally:
        await paper.close()
        await server.close()


def sell(client_order_id: str, amount: str) -> OrderRequest:
    return OrderRequest(client_order_id, PERP, Side.SELL, Decimal(amount))


def assert_emulator_saw_no_order(server: RunningServer) -> None:
    engine = server.venue.engine
    assert engine.orders(KEY) == [] and engine.fills(KEY) == []
    assert not server.venue.api_calls  # not one signed request: paper has no key


async def test_a_paper_order_walks_the_venues_live_book_at_its_taker_fee_and_never_reaches_it() -> None:
    async with paper_on_emulator(speed=600, tick_secs=600) as (server, paper):  # a tick a wall second
        paper.engine.walk_depth = False  # the engine's own book: the whole order at the touch
        venue_book = server.venue.engine.book
        bids_before = {price for price, _ in venue_book(PERP, LIVE_BOOK_DEPTH)[0]}
        state = await paper.place_order(sell("dk1a0", "5000"))  # deeper than the touch: several levels
        bids_after = {price for price, _ in venue_book(PERP, LIVE_BOOK_DEPTH)[0]}
        fills = paper.engine.fills(paper.account_id)

        assert state.filled_contracts == Decimal(5000)
        assert len({fill.price for fill in fills}) > 1
        assert {fill.price for fill in fills} <= bids_before | bids_after  # the venue's bid levels
        taker = paper.engine.instruments[PERP].taker_fee_rate
        assert taker == Decimal("0.0006")  # the venue's rate (ccxt's market), not the simulator's 0.00055
        for fill in fills:
            assert fill.fee == (fill.amount_contracts * fill.price * taker).quantize(WALLET_QUANTUM)
        assert_emulator_saw_no_order(server)


@pytest.mark.parametrize("fault", ["ws_nan_prices", "ws_absurd_ts"])
async def test_no_paper_order_fills_on_a_refused_or_stale_quote(fault: str) -> None:
    async with paper_on_emulator(speed=600, tick_secs=600) as (server, paper):
        taken: list[Quote] = []
        paper.engine.subscribe_quotes(taken.append)
        faults = server.venue.faults
        faults.config = faults.config.updated({fault: 1.0})  # every websocket push corrupted from now on

        def quote_age_secs() -> float:
            quote = paper.engine.quote(PERP)
            return (paper.clock.now() - quote.ts).total_seconds() if quote else 0.0

        await until(lambda: quote_age_secs() > STALE_SECS, 10, "a stale quote")
        last = paper.engine.quote(PERP)
        assert last is not None
        with pytest.raises(OrderRejected, match="no fresh quote"):
            await paper.place_order(sell("dk1a0", "1"))
        assert paper.engine.fills(paper.account_id) == []
        now = paper.clock.now()
        assert all(quote.bid.is_finite() and quote.ts <= now for quote in taken)  # nothing corrupted got in

        faults.config = faults.config.updated({fault: 0.0})
        await until(lambda: bool(taken) and taken[-1].ts > last.ts, 10, "fresh quotes again")
        state = await paper.place_order(sell("dk1b0", "1"))
        assert state.filled_contracts == Decimal(1)
        assert_emulator_saw_no_order(server)


async def test_paper_funding_settles_at_the_times_the_venue_announces() -> None:
    # 3,600 simulated seconds a wall second: the venue settles funding every 8 wall seconds, off the wall
    # clock's 8-hour grid, so a payment at all shows the announced times were followed.
    async with paper_on_emulator(speed=3600, tick_secs=600) as (server, paper):
        for attempt in range(20):  # 10 simulated minutes a tick: the book may be a tick past the quote
            try:
                await paper.place_order(sell(f"dk1a{attempt}", "10"))
                break
            except OrderRejected as refused:
                assert "disagrees with the quote" in str(refused)
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("no paper fill in 20 tries")
        await until(lambda: len(paper.engine.funding_payments(paper.account_id)) >= 2, 30, "two settlements")
        payments = paper.engine.funding_payments(paper.account_id)
        venue_times = {ms for ms, _ in server.venue.funding_history[PERP]}
        assert all(int(p.ts.timestamp() * 1000) in venue_times for p in payments)
        assert len({p.ts for p in payments}) == len(payments)  # each settlement once
        for payment in payments:
            assert payment.position_contracts == Decimal(-10) and payment.currency == "USDT"
            assert payment.amount != 0 and (payment.amount > 0) == (payment.rate > 0)  # a short receives
        assert_emulator_saw_no_order(server)


async def test_a_venue_stream_that_fails_ends_the_paper_streams_with_exchange_unavailable() -> None:
    async with paper_on_emulator(speed=600, tick_secs=600) as (_, paper):
        events = paper.account_events()
        unlisted = paper.quotes(["NOPE/USDT:USDT"])  # the adapter fails on a market the venue does not list
        for stream in (unlisted, events):
            with pytest.raises(ExchangeUnavailable, match="simulated feed failed"):
                await asyncio.wait_for(anext(stream), 5)
