"""The service: streams in, scheduled recomputes, reconciliation, heartbeat, clean shutdown."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import TypeVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from deltakeeper.app.control import OperatorControl
from deltakeeper.app.journal_writes import WatchedJournal
from deltakeeper.app.reconciliation import Reconciliation, reconcile
from deltakeeper.app.service import Service
from deltakeeper.app.watch import Watch
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent

log = structlog.get_logger("deltakeeper.runner")
T = TypeVar("T")

RECONCILE_RETRY_MAX_SECS = 30.0
QUIET_WAIT_EXTRA_SECS = 5.0
"""A periodic reconciliation waits for in-flight orders at most the order timeout plus this."""
ACCOUNT_READ_MAX_RECOMPUTES = 3
"""Ready (`/readyz`) only while the account was read within this many DK_RECOMPUTE_SECS."""

QUOTE_READ_SECS = 1.0
"""At most one REST read a second per market vouches for its first quote, or confirms or contradicts the
quotes the price gate holds."""


class Runner:
    def __init__(
        self,
        service: Service,
        recompute_secs: float,
        reconcile_secs: float,
        heartbeat_path: Path,
        rng: random.Random | None = None,
        control: OperatorControl | None = None,
        watch: Watch | None = None,
        journal_writes: WatchedJournal | None = None,
    ) -> None:
        self.service = service
        self.recompute_secs = recompute_secs
        self.reconcile_secs = reconcile_secs
        self.heartbeat_path = heartbeat_path
        self.rng = rng or random.Random(0)
        self.reconciled = False
        self.control = control
        self.watch = watch or Watch(service)
        self.scheduler: AsyncIOScheduler | None = None
        self._running_jobs: set[asyncio.Task[object]] = set()
        self._reads: dict[str, asyncio.Task[None]] = {}
        """Symbol -> its REST read confirming held quotes, while one runs."""
        self._read_at: dict[str, float] = {}
        """Symbol -> when (monotonic) its last read started."""
        self._unvouched: dict[str, Quote] = {}
        """Symbol -> its latest quote, while no read has vouched for the market yet."""
        self.last_beat: float | None = None
        """Wall time (time.time()) of the last heartbeat."""
        self.journal_writes = journal_writes
        """The service's journal, watched: whether its writes succeed."""
        self.started_at = time.monotonic()
        self.account_read_at: float | None = None
        """Monotonic time of the last successful read of the account (REST, or pushed by the stream)."""

    async def run(self, stop: asyncio.Event) -> None:
        service = self.service
        await service.alerts.send("info", "started", f"deltakeeper started on {service.exchange.name}")
        self.started_at = time.monotonic()
        self.beat()
        # The heartbeat (liveness) is the scheduler's own tick, whatever the exchange and the journal do
        # (their health is readiness's): from before the start's reconciliation on.
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(self._beat_tick, "interval", seconds=self.recompute_secs, max_instances=1,
                          coalesce=True, id="heartbeat")
        scheduler.start()
        started = False
        try:
            if await self._reconcile_until_ok(stop):
                if self.control is not None:
                    await self.control.start()  # a halt journaled before the start holds: read it first
                await service.daily.load(service.journal, service.clock.now())
                started = True
        finally:
            if not started:
                scheduler.shutdown(wait=False)
        if not started:
            return
        symbols = service.symbols()
        self.scheduler = scheduler
        scheduler.add_job(
            self._tracked(self._recompute), "interval", seconds=self.recompute_secs, max_instances=1,
            coalesce=True, id="recompute",
        )
        scheduler.add_job(
            self._tracked(self._reconcile_quietly), "interval", seconds=self.reconcile_secs, max_instances=1,
            coalesce=True, id="reconcile",
        )
        if self.watch.daily_summary_at is not None and self.watch.reader is not None:
            hour, minute = (int(part) for part in self.watch.daily_summary_at.split(":"))
            scheduler.add_job(
                self._tracked(self._daily_summary), CronTrigger(hour=hour, minute=minute, timezone=UTC),
                max_instances=1, coalesce=True, misfire_grace_time=3600, id="daily_summary",
            )
        streams = [
            asyncio.create_task(
                self._consume(lambda: service.exchange.quotes(symbols), self._on_quote, "quotes")
            ),
            asyncio.create_task(self._consume(service.exchange.account_events, self._on_event, "account")),
        ]
        log.info("service_started", symbols=symbols, assets=sorted(service.policies))
        try:
            await stop.wait()
        finally:
            log.info("service_stopping")
            # No new job starts; one already running finishes (shutting the scheduler down would cancel
            # it) before the journal and the exchange close under it.
            scheduler.pause()
            await asyncio.gather(*self._running_jobs, return_exceptions=True)
            scheduler.shutdown(wait=False)
            for task in [*streams, *self._reads.values()]:
                task.cancel()
            await asyncio.gather(*streams, *self._reads.values(), return_exceptions=True)
            await service.orders.drain()
            await service.alerts.send("info", "stopped", "deltakeeper stopped")

    def _tracked(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A scheduled job whose run the shutdown can wait for."""

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running_jobs.add(task)
            try:
                await job()
            finally:
                self._running_jobs.discard(task)

        return run

    async def _beat_tick(self) -> None:
        self.beat()

    def beat(self) -> None:
        self.heartbeat_path.parent.mkdir(parents=True, exist_ok=True)
        self.last_beat = time.time()
        self.heartbeat_path.write_text(f"{self.last_beat:.3f}\n")

    async def _recompute(self) -> None:
        if self.control is not None:
            try:
                await self.control.poll()
            except Exception as exc:
                self.service.counters.errors += 1
                log.exception("control_poll_failed", error=str(exc))
        try:
            self.service.ingest.on_account(await self.service.exchange.fetch_account())
            self.account_read_at = time.monotonic()
            deltas = await self.service.cycle.evaluate_all()
            await self.service.journal.record_snapshot(
                self.service.clock.now(), deltas, self.service.trading.state.value
            )
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("recompute_failed", error=str(exc))
        try:
            await self.watch.check_blind(self.blind_secs())
            await self.watch.check()
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("watch_failed", error=str(exc))

    def account_read_age_secs(self) -> float | None:
        """Seconds since the account was last read; None before the first read."""
        return None if self.account_read_at is None else time.monotonic() - self.account_read_at

    def blind_secs(self) -> dict[str, float]:
        """How long the bot has been without each thing it trades on: `account` (since its last read),
        each watched symbol (since its last quote), `journal` (since its writes started failing; 0 while
        they succeed). Never longer than the Runner has run."""
        now = time.monotonic()
        running = now - self.started_at
        seen = {"account": self.account_read_at,
                **{s: self.service.state.received_at.get(s) for s in self.service.symbols()}}
        ages = {name: running if at is None else min(now - at, running) for name, at in seen.items()}
        failing = self.journal_writes.failing_secs() if self.journal_writes is not None else None
        ages["journal"] = failing or 0.0
        return ages

    async def _reconcile_until_ok(self, stop: asyncio.Event) -> bool:
        service = self.service
        delay = 1.0
        while not stop.is_set():
            try:
                result = await reconcile(
                    service.exchange, service.journal, service.clock, service.options.order_timeout_secs
                )
                service.ingest.on_account(result.account)
                self.account_read_at = time.monotonic()
                await self._report_liquidations(result)
                self.reconciled = True
                return True
            except Exception as exc:
                service.counters.errors += 1
                log.error("reconcile_failed", error=str(exc), retry_in_secs=round(delay, 1))
                await service.alerts.send("error", "reconciliation_failed", f"not trading: {exc}")
                await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, RECONCILE_RETRY_MAX_SECS)
        return False

    async def _report_liquidations(self, result: Reconciliation) -> None:
        """Liquidation fills that only reconciliation found are journaled and alerted as the stream's are;
        so are other traders' orders with our prefix."""
        handler = self.service.ingest.on_liquidation
        if handler is not None:
            for fill in result.liquidations:
                await handler(fill)
        if result.foreign_orders and self.service.ingest.on_foreign_order is not None:
            await self.service.ingest.on_foreign_order(result.foreign_orders[0])

    async def _reconcile_quietly(self) -> None:
        """The periodic reconciliation: no new decision meanwhile, and in-flight orders are let end
        first, so that what it finds to add or settle is what the streams missed."""
        service = self.service
        try:
            timeout_secs = service.options.order_timeout_secs
            async with service.orders.quiet(timeout_secs + QUIET_WAIT_EXTRA_SECS) as idle:
                # Orders still in flight after the wait stay the order runner's to settle.
                result = await reconcile(service.exchange, service.journal, service.clock, timeout_secs,
                                         set(service.orders.in_flight.values()), service.trading.holds_lock)
                service.ingest.on_account(result.account)
                self.account_read_at = time.monotonic()
                await self._report_liquidations(result)
        except Exception as exc:
            service.counters.errors += 1
            log.error("reconcile_failed", error=str(exc))
            await service.alerts.send(
                "error", "reconciliation_failed", f"periodic reconciliation failed: {exc}"
            )
            return
        await self.watch.on_reconciled(result, idle)

    async def _daily_summary(self) -> None:
        try:
            await self.watch.daily_summary()
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("daily_summary_failed", error=str(exc))

    async def _on_quote(self, quote: Quote) -> None:
        """Apply a quote the price gate accepts, and decide on it; the quotes of a market nothing vouches
        for yet wait for a REST read of it (the latest is then judged against that read).
        Nothing here ends the shared quote stream: an error handling one quote is logged with its traceback
        and that quote skipped."""
        try:
            if not self.service.state.vouched(quote.symbol):
                self._unvouched[quote.symbol] = quote  # judged once the read comes
                self._read_quote(quote.symbol)
            elif self.service.ingest.on_quote(quote):
                await self._decide_on(quote)
            elif self.service.state.held(quote.symbol):  # held by the price gate: no decision on it
                self._read_quote(quote.symbol)
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("quote_failed", symbol=quote.symbol, error=str(exc))

    async def _decide_on(self, quote: Quote) -> None:
        self.watch.on_quote(quote)
        await self.service.cycle.on_quote(quote.symbol)

    async def _on_account(self, snapshot: AccountSnapshot) -> None:
        if self.service.ingest.on_account(snapshot):
            for asset in self.service.policies:
                await self.service.cycle.evaluate(asset, scheduled=False)

    def _read_quote(self, symbol: str) -> None:
        """Read the market's quote by REST to vouch for its first quote, or confirm or contradict its held
        quotes, unless a read runs or one started less than QUOTE_READ_SECS ago."""
        now = time.monotonic()
        if symbol in self._reads or now - self._read_at.get(symbol, -math.inf) < QUOTE_READ_SECS:
            return
        self._read_at[symbol] = now
        task = self._reads[symbol] = asyncio.create_task(self._confirm_by_read(symbol))
        task.add_done_callback(lambda _: self._reads.pop(symbol, None))

    async def _confirm_by_read(self, symbol: str) -> None:
        state = self.service.state
        try:
            read = await self.service.exchange.fetch_quote(symbol)
        except Exception as exc:  # a failed read confirms nothing
            log.warning("quote_read_failed", symbol=symbol, error=str(exc))
            return
        try:
            if not state.vouched(symbol):
                self.service.ingest.on_first_read(read)
                del self._read_at[symbol]  # not a read of held quotes: one held next is read at once
                if (quote := self._unvouched.pop(symbol, None)) is not None:
                    await self._on_quote(quote)
            elif self.service.ingest.on_read(read):
                await self._decide_on(state.quotes[symbol])
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("quote_failed", symbol=symbol, error=str(exc))

    async def _on_event(self, event: AccountEvent) -> None:
        """Handle one account event. Nothing here ends the shared account stream: an error handling one
        event (a journal that does not answer) is logged with its traceback and that event skipped (the
        periodic reconciliation brings what it missed)."""
        try:
            if isinstance(event, Fill):
                await self.service.ingest.on_fill(event)
            elif isinstance(event, FundingPayment):
                await self.service.ingest.on_funding(event)
            elif isinstance(event, OrderState):
                await self.service.ingest.on_order(event)
            elif isinstance(event, AccountSnapshot):
                self.account_read_at = time.monotonic()
                await self._on_account(event)
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("account_event_failed", event_type=type(event).__name__, error=str(exc))

    async def _consume(
        self, open_stream: Callable[[], AsyncIterator[T]], handle: Callable[[T], Awaitable[None]], name: str
    ) -> None:
        """Run a stream forever: an error in the stream or a handler is logged, and the stream is
        reopened after a backoff with jitter."""
        delay = 0.5
        while True:
            try:
                async for item in open_stream():
                    await handle(item)
                    delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.service.counters.errors += 1
                log.error("stream_failed", stream=name, error=str(exc), retry_in_secs=round(delay, 2))
            await asyncio.sleep(delay * (1 + self.rng.random()))
            delay = min(delay * 2, 30.0)


async def _sleep_or_stop(stop: asyncio.Event, secs: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=secs)
    except TimeoutError:
        pass
