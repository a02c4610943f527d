"""Paper trading (`DK_MODE=paper`): the simulated engine on a real exchange's live public data.

The market comes from the exchange's PUBLIC side through an Exchange port with no account behind it
(`bootstrap` gives the ccxt adapter, built without keys): its markets (lot steps, minimums, the venue's
fee rates), its quote streams (tickers with mark, index, funding rate and next funding time), its order
book and its REST ticker. What the adapter refuses (a malformed, non-finite or implausibly stamped quote;
a silent stream, reopened) never reaches the engine. The account is the engine's, in process: orders
never leave it.

- Orders fill against the venue's live order book, read by REST when the order is placed (best levels
  first, the last level taking what is left), at the venue's taker and maker fees. An order is refused
  while its market's last quote is older than `stale_after_secs`, when the book cannot be read, or when
  its touch is more than BOOK_QUOTE_TOLERANCE away from the quote's. A resting limit order fills whole
  at its price when a later quote crosses it.
- Funding settles at the time the venue announces (`Quote.next_funding_ts`), at the rate it published
  for that time, on the position's notional at the first mark past it; a venue that announces no time
  settles on each perpetual's interval grid (the engine's own rule).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog

from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.errors import DeltakeeperError, ExchangeUnavailable, OrderRejected
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.orders import OrderRequest, OrderState, Quote, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import Clock, Exchange
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.engine_state import Book
from deltakeeper.sim.gateway import EngineGateway

log = structlog.get_logger(__name__)

LIVE_BOOK_DEPTH = 50
"""Levels of each side read when an order is placed: a depth every major venue serves (Binance's futures
answer 5, 10, 20, 50, 100, 500 or 1,000 only)."""
BOOK_QUOTE_TOLERANCE = Decimal("0.01")
"""How far (a fraction of the price) the live book's touch may be from the fresh quote's."""


class PaperGateway(EngineGateway):
    """`ports.Exchange`: a paper account of `starting_balances` in a `SimEngine` over `public`'s markets
    (loaded on `load_instruments`, which comes first), following the markets `quotes` is asked for.
    `public` is read for markets, quotes and books only: nothing of an account is asked of it."""

    def __init__(self, public: Exchange, clock: Clock, starting_balances: Mapping[str, Decimal], *,
                 stale_after_secs: float, seed: int, account_id: str = "paper") -> None:
        super().__init__(clock, account_id)
        self.name = f"paper:{public.name}"
        self.public = public
        self._starting_balances = dict(starting_balances)
        self._stale_after_secs = stale_after_secs
        self._seed = seed
        self._followed: set[str] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._pump_failed: asyncio.Future[None] | None = None
        self._funding_due: dict[str, tuple[datetime, Decimal]] = {}
        """Per perpetual: the next funding time the venue announced and the rate it published for it."""
        self._funding_settled: dict[str, datetime] = {}

    async def load_instruments(self) -> dict[str, Instrument]:
        if not hasattr(self, "engine"):  # the engine lists the venue's markets
            engine = SimEngine(await self.public.load_instruments(), seed=self._seed)
            engine.funding_on_grid = False
            self._attach(engine, self._starting_balances)
        return await super().load_instruments()

    async def fetch_account(self) -> AccountSnapshot:
        await self.load_instruments()
        return await super().fetch_account()

    # the market

    async def _run(self) -> None:
        await self._failed()

    def _failed(self) -> asyncio.Future[None]:
        """Set with the error of a venue stream that failed: the paper market ends with it."""
        if self._pump_failed is None:
            self._pump_failed = asyncio.get_running_loop().create_future()
        return self._pump_failed

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        """The engine's quotes of `symbols`, following the venue's streams of those not followed yet."""
        stream = super().quotes(symbols)
        new = sorted(set(symbols) - self._followed)
        if new:
            self._followed.update(new)
            task = asyncio.create_task(self._pump(new), name="paper-quotes")
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)
        return stream

    async def _pump(self, symbols: list[str]) -> None:
        """The venue's quotes of `symbols` into the engine, for ever (the adapter reconnects): should the
        stream end or fail, the paper market ends with it (`_run`)."""
        try:
            async for quote in self.public.quotes(symbols):
                self._take(quote)
            raise ExchangeUnavailable(f"{self.public.name} quote stream ended")
        except Exception as exc:
            if not self._failed().done():
                self._failed().set_exception(exc)

    def _take(self, quote: Quote) -> None:
        """A live quote: funding due by it settles first, then the engine matches on it."""
        if quote.symbol not in self.engine.instruments:
            return
        self._settle_due_funding(quote)
        self.engine.on_quote(quote)

    def _settle_due_funding(self, quote: Quote) -> None:
        """Settle the funding due by `quote` (its time is past, or the venue announces a later one), then
        note the next: the venue's announced time, else the next boundary of the interval grid."""
        symbol = quote.symbol
        interval = self.engine.instruments[symbol].funding_interval_secs
        if not interval:
            return
        announced = quote.next_funding_ts
        if announced is not None and announced > quote.ts + timedelta(seconds=2 * interval):
            announced = None  # two intervals ahead or more: no time the venue can mean
        due = self._funding_due.get(symbol)
        if due is not None and (quote.ts >= due[0] or (announced is not None and announced > due[0])):
            del self._funding_due[symbol]
            self._funding_settled[symbol] = due[0]
            self.engine.settle_funding(symbol, due[0], due[1], quote.mark)
            log.info("paper_funding_settled", symbol=symbol, at=due[0].isoformat(), rate=str(due[1]))
        if quote.funding_rate is None:
            return
        if announced is None:
            announced = datetime.fromtimestamp((quote.ts.timestamp() // interval + 1) * interval, UTC)
        settled = self._funding_settled.get(symbol)
        if settled is None or announced > settled:
            self._funding_due[symbol] = (announced, quote.funding_rate)

    # orders and reads

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Filled in the engine against the live book; never sent to the venue."""
        quote = self.engine.quote(request.symbol)
        now = self.clock.now()
        if quote is None or (now - quote.ts).total_seconds() > self._stale_after_secs:
            raise OrderRejected(f"paper: no fresh quote for {request.symbol} (last "
                                f"{quote.ts.isoformat() if quote else 'none'}): nothing filled")
        book = await self._live_book(request.symbol, request.side, quote)
        return self.engine.place_order(self.account_id, request, self.clock.now(), book)

    async def _live_book(self, symbol: str, side: Side, quote: Quote) -> Book:
        """The venue's book in contracts, its taken side checked against the fresh quote."""
        try:
            bids, asks = await self.public.fetch_order_book(symbol, LIVE_BOOK_DEPTH)
        except DeltakeeperError as exc:
            raise OrderRejected(f"paper: the live book of {symbol} is unreadable ({exc}): nothing filled"
                                ) from exc
        instrument = self.engine.instruments[symbol]
        book = (book_contracts(instrument, bids), book_contracts(instrument, asks))
        taken, touch = (book[1], quote.ask) if side is Side.BUY else (book[0], quote.bid)
        if not taken or abs(taken[0][0] - touch) > touch * BOOK_QUOTE_TOLERANCE:
            best = taken[0][0] if taken else None
            raise OrderRejected(f"paper: the live book of {symbol} (touch {best}) disagrees with the quote "
                                f"({touch}): nothing filled")
        return book

    async def fetch_quote(self, symbol: str) -> Quote:
        return await self.public.fetch_quote(symbol)

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        return await self.public.fetch_order_book(symbol, depth)

    async def close(self) -> None:
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().close()
        await self.public.close()


def book_contracts(instrument: Instrument, levels: list[BookLevel]) -> list[tuple[Decimal, Decimal]]:
    """Book levels in coins (the port's) back as (price, contracts), to the nearest lot step (an inverse
    level's coins are its contracts divided by the price); empty levels dropped."""
    converted = []
    for level in levels:
        if not (level.price.is_finite() and level.size_coin.is_finite()) or level.price <= 0:
            raise OrderRejected(f"paper: the live book of {instrument.symbol} holds {level}: nothing filled")
        size = instrument.round_contracts(instrument.contracts_for_coin(level.size_coin, level.price))
        if size > 0:
            converted.append((level.price, size))
    return converted
