"""The Exchange port over ccxt.pro: websocket streams where the exchange has them, REST polling where it
does not, and nothing ccxt-shaped crossing the port (DESIGN.md 2, 6). The class is built in layers, one
module each: the clients and plumbing (`ccxt_base`), the account and orders (`ccxt_trading`), the history
of fills and funding (`ccxt_history`), and here the streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import structlog

from deltakeeper.adapters.ccxt_account import balances_from_ccxt, position_from_ccxt
from deltakeeper.adapters.ccxt_base import REMEMBERED_IDS, TRANSPORT_ERRORS
from deltakeeper.adapters.ccxt_binance import BINANCE_FUTURES, is_funding_update, merged_ticker
from deltakeeper.adapters.ccxt_history import CcxtHistory
from deltakeeper.adapters.ccxt_parse import MalformedPayload, error_from_ccxt, quote_from_ticker
from deltakeeper.adapters.ccxt_rate_limit import RateLimitPause, RefillingBucket
from deltakeeper.adapters.ccxt_trades import order_from_ccxt
from deltakeeper.domain.errors import ConfigError, DeltakeeperError
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent

__all__ = ["CcxtExchange", "RateLimitPause", "RefillingBucket"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_BACKFILL_MARGIN = timedelta(minutes=5)
_CATCH_UP_SECS = 2.0
"""How long after (re)subscribing to its trades the account stream backfills them once more by REST."""


class CcxtExchange(CcxtHistory):
    """An exchange account through ccxt.pro (`name` is the ccxt id).

    Streams reconnect with exponential backoff and jitter after errors; a quote stream silent for
    `stale_after_secs` counts as an error and its websocket is reopened. Malformed messages are logged
    and skipped: a websocket frame that carries a non-finite number, is not JSON or makes ccxt fail is
    dropped, and the connection is read on. A rate-limit refusal's `Retry-After` holds every
    REST request of both clients (at most RETRY_AFTER_MAX_SECS). After a reconnect the account stream
    backfills fills and funding by REST from just before the last one it saw (the journal stores each
    once), and re-reads orders and the account.
    """

    # --- streams -----------------------------------------------------------------------------------

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        """Quotes as they change: one websocket subscription per group of markets the exchange serves on
        one connection (Bybit: spot, linear, inverse), else REST polling. Spot books come from the best
        bid and ask stream where there is one (Bybit's spot tickers carry no book; spot's mark is the
        mid), derivatives from tickers (with mark, index and funding rate); Binance's futures from its best
        bid and ask and its mark price streams, merged (`ccxt_binance`)."""
        self.track_markets(symbols)
        groups: dict[tuple[str, bool], list[str]] = {}
        for symbol in symbols:
            market = self._public.markets[symbol]
            groups.setdefault((market["type"], bool(market.get("inverse"))), []).append(symbol)
        has, public = self._public.has, self._public
        receivers: list[Callable[[], Awaitable[list[Any]]]] = []
        for (kind, _), group in groups.items():
            if kind == "spot" and has.get("watchBidsAsks"):
                receivers.append(partial(_many, public.watch_bids_asks, group))
            elif self.name in BINANCE_FUTURES:
                receivers += self._binance_quote_receivers(group)
            elif has.get("watchTickers"):
                receivers.append(partial(_many, public.watch_tickers, group))
            elif has.get("watchTicker"):
                receivers += [partial(_one, public.watch_ticker, symbol) for symbol in group]
            elif has.get("fetchTickers"):
                receivers.append(self._polled(partial(_many, public.fetch_tickers, group)))
            else:
                receivers += [self._polled(partial(_one, public.fetch_ticker, symbol)) for symbol in group]

        async def to_quote(ticker: dict[str, Any]) -> Quote | None:
            try:
                return quote_from_ticker(ticker, self._clock.now(), self._clock.speed)
            except MalformedPayload as exc:
                log.warning("quote_malformed", exchange=self.name, symbol=ticker.get("symbol"),
                            reason=str(exc))
                return None

        return _merge([self._stream("quotes", receive, to_quote, stale_after_secs=self._stale_after_secs,
                                    on_stale=public.close_ws_clients) for receive in receivers])

    def _binance_quote_receivers(self, group: list[str]) -> list[Callable[[], Awaitable[list[Any]]]]:
        """Binance futures tickers: each best bid and ask push with the latest mark, each mark price push
        with the latest best bid and ask; none before both are known."""
        public = self._public
        books: dict[str, dict[str, Any]] = {}
        marks: dict[str, dict[str, Any]] = {}

        async def on_books() -> list[Any]:
            pushed = await public.watch_bids_asks(group)
            books.update(pushed)
            return [merged_ticker(book, marks[symbol]) for symbol, book in pushed.items() if symbol in marks]

        async def on_marks() -> list[Any]:
            pushed = await public.watch_mark_prices(group)
            marks.update(pushed)
            return [merged_ticker(books[symbol], mark) for symbol, mark in pushed.items() if symbol in books]

        return [on_books, on_marks]

    def account_events(self) -> AsyncIterator[AccountEvent]:
        """Order updates, fills, funding payments and account snapshots (wallet balances and positions)."""
        return _merge([self._order_stream(), self._trade_stream(), *self._snapshot_streams()])

    def _order_stream(self) -> AsyncIterator[OrderState]:
        last: dict[str, tuple[Any, ...]] = {}

        async def changed(raw: dict[str, Any]) -> OrderState | None:
            state = order_from_ccxt(raw, self._clock.now())
            key = (state.status, state.filled_contracts)
            if last.get(state.exchange_order_id) == key:
                return None
            last[state.exchange_order_id] = key
            return state

        watching = self._rest.has.get("watchOrders")
        receive = self._rest.watch_orders if watching else self._polled(self._raw_open_orders)
        return self._stream("orders", receive, changed, resync=self.fetch_open_orders)

    def _trade_stream(self) -> AsyncIterator[Fill | FundingPayment]:
        """Fills and funding payments, each once, though pushes, polls and backfills overlap."""
        cursor = [self._clock.now()]
        seen: dict[str, None] = {}

        def new(event: Fill | FundingPayment) -> bool:
            key = event.trade_id if isinstance(event, Fill) else event.payment_id
            if key in seen:
                return False
            seen[key] = None
            if len(seen) > REMEMBERED_IDS:
                del seen[next(iter(seen))]
            cursor[0] = max(cursor[0], event.ts)
            return True

        async def convert(raw: dict[str, Any]) -> Fill | FundingPayment | None:
            event = await self._trade_event(raw)
            return event if new(event) else None

        async def backfill(start: datetime) -> list[Fill | FundingPayment]:
            since = start - _BACKFILL_MARGIN
            missed: list[Fill | FundingPayment] = [*await self.fetch_fills(since),
                                                   *await self.fetch_funding_payments(since)]
            return [event for event in missed if new(event)]

        if not self._rest.has.get("watchMyTrades"):
            polled = self._polled(lambda: self._raw_trades(cursor[0] - _BACKFILL_MARGIN))
            return self._stream("trades", polled, convert, resync=lambda: backfill(cursor[0]))

        # A backfill runs before each (re)subscription, and another once the subscription has had time to
        # start: what settled between the first backfill and the subscription reaches neither otherwise.
        # The second starts where the first did, not at the cursor: a newer push may have moved the cursor
        # past what the subscription missed.
        fresh = [True]
        subscribed = asyncio.Event()
        resumed_from = [cursor[0]]

        async def resync() -> list[Fill | FundingPayment]:
            fresh[0] = True
            resumed_from[0] = cursor[0]
            return await backfill(cursor[0])

        async def receive() -> Iterable[Any]:
            if fresh[0]:
                fresh[0] = False
                subscribed.set()
            return await self._rest.watch_my_trades()

        async def catch_up() -> AsyncIterator[Fill | FundingPayment]:
            while True:
                await subscribed.wait()
                subscribed.clear()
                await asyncio.sleep(_CATCH_UP_SECS)
                try:
                    missed = await backfill(resumed_from[0])
                except (*TRANSPORT_ERRORS, DeltakeeperError) as exc:
                    log.warning("stream_error", stream="trades", exchange=self.name, stage="catch_up",
                                error=f"{type(exc).__name__}: {exc}")
                    continue
                for event in missed:
                    yield event

        async def funding_settled() -> AsyncIterator[Fill | FundingPayment]:
            """Binance pushes no funding payment, only the balance it changed: read them then."""
            while True:
                await self._funding_settled.wait()
                self._funding_settled.clear()
                try:
                    paid = await self.fetch_funding_payments(cursor[0] - _BACKFILL_MARGIN)
                except (*TRANSPORT_ERRORS, DeltakeeperError) as exc:
                    log.warning("stream_error", stream="trades", exchange=self.name, stage="funding",
                                error=f"{type(exc).__name__}: {exc}")
                    continue
                for payment in paid:
                    if new(payment):
                        yield payment

        streams = [self._stream("trades", receive, convert, resync=resync), catch_up()]
        return _merge([*streams, funding_settled()] if self.name in BINANCE_FUTURES else streams)

    def _snapshot_streams(self) -> list[AsyncIterator[AccountSnapshot]]:
        """Snapshots of the account: polled by REST, or the last read (`fetch_account`, by any caller) with
        the balance and position pushes since merged in, each push replacing its own part only."""
        has = self._rest.has

        async def fetched() -> list[AccountSnapshot]:
            return [await self.fetch_account()]

        async def same(snapshot: AccountSnapshot) -> AccountSnapshot:
            return snapshot

        if not (has.get("watchBalance") and has.get("watchPositions")):
            return [self._stream("account", self._polled(fetched), same, resync=fetched, resync_first=True)]

        def snapshot() -> AccountSnapshot:
            return AccountSnapshot(dict(self._balances), tuple(self._positions.values()), self._clock.now())

        async def on_balance(balance: dict[str, Any]) -> AccountSnapshot:
            self._balances = balances_from_ccxt(balance, self.name)
            if self.name in BINANCE_FUTURES and is_funding_update(balance):
                self._funding_settled.set()
            return snapshot()

        async def on_positions(raws: list[dict[str, Any]]) -> AccountSnapshot:
            if self.name in BINANCE_FUTURES:  # its pushes carry no mark price: read the account
                return await self.fetch_account()
            # An option's delta and IV are those of its ticker last read (read now for an option not seen
            # before; without a delta, Black-76 at the IV), not its forward, which moved: gamma is then at
            # the asset's price. The pushed row's delta is no more than a cross-check (ccxt_account).
            self._greeks.update(await self._option_greeks([raw for raw in raws
                                                           if str(raw.get("symbol")) not in self._greeks]))
            pushed = [position_from_ccxt(raw, await self._instrument(raw.get("symbol")), self.name,
                                         _without_forward(self._greeks.get(str(raw.get("symbol")))),
                                         self._row_delta_warned)
                      for raw in raws]  # all read before any is taken: a malformed push changes nothing
            for position in pushed:
                if position.contracts:
                    self._positions[position.symbol] = position
                else:
                    self._positions.pop(position.symbol, None)
            return snapshot()

        return [
            self._stream("balance", partial(_one, self._rest.watch_balance), on_balance, resync=fetched,
                         resync_first=True),
            self._stream("positions", partial(_one, self._rest.watch_positions), on_positions,
                         resync=fetched, resync_first=True),
        ]

    async def _stream(
        self,
        name: str,
        receive: Callable[[], Awaitable[Iterable[Any]]],
        convert: Callable[[Any], Awaitable[T | None]],
        *,
        stale_after_secs: float | None = None,
        on_stale: Callable[[], Awaitable[Any]] | None = None,
        resync: Callable[[], Awaitable[Sequence[T]]] | None = None,
        resync_first: bool = False,
    ) -> AsyncIterator[T]:
        """Receive, convert and yield forever. After a failure: back off, resync by REST, receive again."""
        failures = 0
        resync_due = resync_first
        while True:
            if failures:
                await asyncio.sleep(self._backoff_secs(failures))
            if resync is not None and (failures or resync_due):
                try:
                    resynced = await resync()
                except (*TRANSPORT_ERRORS, DeltakeeperError) as exc:
                    failures += 1
                    self._stream_failed(name, exc, failures, stage="resync")
                    continue
                resync_due = False
                for event in resynced:
                    yield event
            try:
                raws = await asyncio.wait_for(receive(), stale_after_secs)
            except TimeoutError:
                failures += 1
                log.warning("stream_stale", stream=name, exchange=self.name, silent_secs=stale_after_secs,
                            failures=failures)
                if on_stale is not None:
                    await on_stale()
                continue
            except (*TRANSPORT_ERRORS, DeltakeeperError) as exc:
                failures += 1
                self._stream_failed(name, exc, failures, stage="receive")
                continue
            if failures:
                log.info("stream_resumed", stream=name, exchange=self.name, after_failures=failures)
                failures = 0
            for raw in raws:
                try:
                    converted = await convert(raw)
                except MalformedPayload as exc:
                    log.warning("malformed_message_skipped", stream=name, exchange=self.name, reason=str(exc))
                    continue
                except (*TRANSPORT_ERRORS, DeltakeeperError) as exc:  # a read it needed (the markets)
                    failures += 1
                    self._stream_failed(name, exc, failures, stage="convert")
                    break
                if converted is not None:
                    yield converted

    def _stream_failed(self, name: str, exc: BaseException, failures: int, stage: str) -> None:
        """Log a failure to be retried; a refused key (ConfigError) ends the stream instead."""
        error = error_from_ccxt(exc)
        if isinstance(error, ConfigError):
            raise error from exc
        log.warning("stream_error", stream=name, exchange=self.name, stage=stage,
                    error=f"{type(exc).__name__}: {exc}", failures=failures)

    def _polled(self, fetch: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def poll() -> T:
            await asyncio.sleep(self._poll_interval_secs)
            return await fetch()

        return poll


def _without_forward(greeks: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if greeks is None else {key: greeks.get(key) for key in ("delta", "markImpliedVolatility")}


async def _many(fetch: Callable[..., Awaitable[Mapping[str, Any]]], *args: Any) -> list[Any]:
    """The values of a ccxt answer keyed by symbol (tickers)."""
    return list((await fetch(*args)).values())


async def _one(fetch: Callable[..., Awaitable[Any]], *args: Any) -> list[Any]:
    return [await fetch(*args)]


class _StreamFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _merge(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[T]:
    """Items from all `streams` as they come; a stream that dies of a bug ends the merge with its error."""
    queue: asyncio.Queue[T | _StreamFailed] = asyncio.Queue()

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put(item)
        except Exception as exc:
            await queue.put(_StreamFailed(exc))

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _StreamFailed):
                raise item.error
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
