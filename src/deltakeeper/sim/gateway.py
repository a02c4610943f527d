"""The in-process face of the simulated exchange: `ports.Exchange` over a `SimEngine` (DESIGN.md 8.1).

`EngineGateway` is the port over an engine's account; what moves the engine's market is a subclass's:
`SimGateway` replays a feed on the simulated clock, `sim.paper.PaperGateway` follows a real exchange.
In `SimGateway` one asyncio task drives the feed: it waits until the simulated clock reaches each step's
time (wall time = simulated step / speed, measured from the clock's anchor, so delays never add up),
moves the clock to it, hands the quotes to the engine and lets the scenario act. At speed 0 or infinity
it runs as fast as the event loop allows, yielding to other tasks after every step. When the feed ends,
the streams end; if driving it fails, they end with ExchangeUnavailable (caused by the error). One
gateway drives one engine.

Streams: every `quotes()` or `account_events()` call gets its own bounded queue.
- Quotes: when a subscriber's queue is full, its backlog is squashed to the latest quote per symbol
  (a slow reader sees fewer, never stale, quotes).
- Account events: when a subscriber's queue is full, its stream ends with ExchangeUnavailable after the
  events already queued, like a dropped websocket; the reader then reconciles with `fetch_*`.
  With `max_event_backlog` (a benchmark's driver; an exchange waits for nobody, and by default neither
  does the feed) the feed waits instead, before each step, while a reader has more than that many events
  queued, until it has taken them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.margin import MarginRules, account_margin
from deltakeeper.domain.margin_tiers import MarginTier
from deltakeeper.domain.orders import Fill, FundingPayment, OrderRequest, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.venue_margin import AccountMode, VenueMargin, worst_ratio
from deltakeeper.ports import AccountEvent, Clock
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import Feed
from deltakeeper.sim.scenario import InventoryScenario

QUOTE_QUEUE_SIZE = 1_000
EVENT_QUEUE_SIZE = 10_000

T = TypeVar("T")


class _Stream(ABC, Generic[T]):
    """An async iterator over a bounded queue, with one slot kept free for the end marker (None)."""

    def __init__(self, size: int, on_close: Callable[[_Stream[T]], object]) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(size + 1)
        self._size = size
        self._on_close = on_close
        self._ended = False
        self._error: Exception | None = None
        self._drained: asyncio.Event | None = None

    def push(self, item: T) -> None:
        if self._ended:
            return
        if self._queue.qsize() >= self._size:
            self._overflow(item)
        else:
            self._queue.put_nowait(item)

    @abstractmethod
    def _overflow(self, item: T) -> None: ...

    def end(self, error: Exception | None = None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._queue.put_nowait(None)
            self._on_close(self)
            self._wake()

    def __aiter__(self) -> _Stream[T]:
        return self

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def drained(self) -> None:
        """Wait until the reader has taken every queued item, or the stream has ended."""
        while not self._ended and not self._queue.empty():
            self._drained = asyncio.Event()
            await self._drained.wait()

    def _wake(self) -> None:
        if self._drained is not None and (self._ended or self._queue.empty()):
            self._drained.set()
            self._drained = None

    async def __anext__(self) -> T:
        item = await self._queue.get()
        self._wake()
        if item is None:
            self._queue.put_nowait(None)
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self.end()


class _QuoteStream(_Stream[Quote]):
    def _overflow(self, item: Quote) -> None:
        latest: dict[str, Quote] = {}
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            if queued is not None:
                latest[queued.symbol] = queued
        latest[item.symbol] = item
        for quote in latest.values():
            self._queue.put_nowait(quote)


class _EventStream(_Stream[AccountEvent]):
    def _overflow(self, item: AccountEvent) -> None:
        self.end(ExchangeUnavailable("account event stream overflowed: reconcile with fetch_*"))


class EngineGateway:
    """`ports.Exchange` for one account of a `SimEngine`, whatever moves its market: a subclass's `_run`,
    started on `start()` (or the first call of `load_instruments`, `fetch_account`, `quotes` or
    `account_events`). When `_run` returns the streams end; if it fails, they end with ExchangeUnavailable
    (caused by the error)."""

    name = "sim"
    engine: SimEngine

    def __init__(self, clock: Clock, account_id: str) -> None:
        self.clock = clock
        self.account_id = account_id
        self._task: asyncio.Task[None] | None = None
        self._failure: ExchangeUnavailable | None = None
        self._quote_streams: dict[_Stream[Quote], frozenset[str]] = {}
        self._event_streams: set[_Stream[AccountEvent]] = set()

    def _attach(self, engine: SimEngine, starting_balances: Mapping[str, Decimal]) -> None:
        """Trade on `engine`, opening the account with `starting_balances` unless the engine has it."""
        self.engine = engine
        if not engine.has_account(self.account_id):
            engine.open_account(self.account_id, starting_balances)
        engine.subscribe_quotes(self._on_quote)
        engine.subscribe(self._on_account_event)

    def start(self) -> None:
        """Start moving the market (idempotent). Needs a running event loop."""
        self._driver()

    def _driver(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self._drive(), name="sim-feed")
        return self._task

    @property
    def feed_done(self) -> bool:
        return self._task is not None and self._task.done()

    async def join(self) -> None:
        """Start the feed if needed and wait until it has ended (a finite replay, run to completion)."""
        await asyncio.shield(self._driver())

    async def _drive(self) -> None:
        try:
            await self._run()
        except Exception as exc:
            self._failure = ExchangeUnavailable(f"simulated feed failed: {exc!r}")
            self._failure.__cause__ = exc
        self._end_streams(self._failure)

    async def _run(self) -> None:
        raise NotImplementedError

    def _end_streams(self, error: Exception | None = None) -> None:
        for quote_stream in list(self._quote_streams):
            quote_stream.end(error)
        for event_stream in list(self._event_streams):
            event_stream.end(error)

    def _on_quote(self, quote: Quote) -> None:
        for stream, symbols in self._quote_streams.items():
            if not symbols or quote.symbol in symbols:
                stream.push(quote)

    def _on_account_event(self, account_id: str, event: AccountEvent) -> None:
        if account_id == self.account_id:
            for stream in list(self._event_streams):
                stream.push(event)

    # ports.Exchange

    async def load_instruments(self) -> dict[str, Instrument]:
        self.start()
        return dict(self.engine.instruments)

    async def fetch_account(self) -> AccountSnapshot:
        self.start()
        return self.engine.snapshot(self.account_id, self.clock.now())

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        """Quotes for `symbols` (every market when empty), starting with the latest known of each."""
        self.start()
        wanted = frozenset(symbols)
        stream = _QuoteStream(max(QUOTE_QUEUE_SIZE, len(wanted)), lambda s: self._quote_streams.pop(s, None))
        self._quote_streams[stream] = wanted
        for symbol in sorted(wanted or self.engine.instruments):
            latest = self.engine.quote(symbol)
            if latest is not None:
                stream.push(latest)
        if self.feed_done:
            stream.end(self._failure)
        return stream

    async def fetch_quote(self, symbol: str) -> Quote:
        quote = self.engine.quote(symbol)
        if quote is None:
            raise ExchangeUnavailable(f"no quote for {symbol} yet")
        return quote

    def account_events(self) -> AsyncIterator[AccountEvent]:
        self.start()
        stream = _EventStream(EVENT_QUEUE_SIZE, self._event_streams.discard)
        self._event_streams.add(stream)
        if self.feed_done:
            stream.end(self._failure)
        return stream

    async def place_order(self, request: OrderRequest) -> OrderState:
        return self.engine.place_order(self.account_id, request, self.clock.now())

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        self.engine.cancel_order(self.account_id, symbol, self.clock.now(), client_order_id=client_order_id)

    async def cancel_all_orders(self, symbol: str | None = None) -> None:
        self.engine.cancel_all(self.account_id, symbol, self.clock.now())

    async def fetch_open_orders(self) -> list[OrderState]:
        return self.engine.open_orders(self.account_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        state = self.engine.order(self.account_id, client_order_id=client_order_id)
        return state if state is not None and state.symbol == symbol else None

    async def fetch_fills(self, since: datetime) -> list[Fill]:
        return self.engine.fills(self.account_id, since)

    async def fetch_funding_payments(self, since: datetime) -> list[FundingPayment]:
        return self.engine.funding_payments(self.account_id, since)

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        """The engine's synthetic book around the last quote, sizes in coins."""
        instrument = self.engine.instruments[symbol]
        bids, asks = self.engine.book(symbol, depth)
        return ([BookLevel(p, abs(instrument.delta_coin(s, p))) for p, s in bids],
                [BookLevel(p, abs(instrument.delta_coin(s, p))) for p, s in asks])

    async def fetch_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, tuple[MarginTier, ...]]:
        """The engine's one table (`maintenance_tiers`) for each of the futures `symbols` it lists."""
        futures = {i.symbol for i in self.engine.instruments.values() if i.is_derivative and not i.is_option}
        return {symbol: tuple(self.engine.maintenance_tiers) for symbol in symbols if symbol in futures}

    async def fetch_account_margin(self) -> VenueMargin:
        """Standard cross margin per settlement currency (the engine's rule, `domain.margin.account_margin`
        on its snapshot): the ratio of the settlement currency nearest liquidation, the maintenance margin
        the engine reports on its positions over its margin balance (wallet + futures PnL); 0 with nothing
        at risk."""
        snapshot = self.engine.snapshot(self.account_id, self.clock.now())
        margin = account_margin(self.engine.instruments, snapshot.balances, snapshot.positions, {},
                                MarginRules())  # the engine reports every position's maintenance margin
        pools = {pool.settle: (pool.maintenance_margin, pool.equity) for pool in margin.by_settle.values()}
        settle, ratio = worst_ratio(pools) or ("", Decimal(0))
        return VenueMargin(AccountMode.STANDARD, snapshot.ts, ratio,
                           f"maintenance margin/margin balance {settle}".strip(),
                           "simulated exchange: standard cross margin per settlement currency")

    async def close(self) -> None:
        """Stop the feed and end the streams."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._end_streams()


class SimGateway(EngineGateway):
    """The simulator's gateway: its feed drives the engine on the simulated clock, and the scenario acts
    after each step. Opens the account with the scenario's starting balances (empty without a scenario)
    unless the engine has it already."""

    def __init__(self, engine: SimEngine, feed: Feed, clock: SimClock, scenario: InventoryScenario | None,
                 account_id: str, *, max_event_backlog: int | None = None) -> None:
        super().__init__(clock, account_id)
        self.clock: SimClock = clock
        self.max_event_backlog = max_event_backlog
        self.feed_waits = 0
        """How many times the feed waited for an account-event reader (`max_event_backlog`)."""
        self._feed = feed
        self._scenario = scenario
        self._attach(engine, scenario.params.starting_balances if scenario else {})

    async def _run(self) -> None:
        for sim_time, quotes in self._feed:
            await asyncio.sleep(self.clock.wall_secs_until(sim_time))
            if self.max_event_backlog is not None:
                await self._wait_for_readers(self.max_event_backlog)
            self.clock.advance_to(sim_time)
            for quote in quotes:
                self.engine.on_quote(quote)
            if self._scenario is not None:
                self._scenario.advance(self.engine, self.account_id, sim_time)

    async def _wait_for_readers(self, max_backlog: int) -> None:
        for stream in [s for s in self._event_streams if s.backlog > max_backlog]:
            self.feed_waits += 1
            await stream.drained()
