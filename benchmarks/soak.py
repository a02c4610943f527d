"""Benchmark 5: a soak. One million ticks through the simulated exchange at full speed, with the bot
trading on them; resident memory, open asyncio tasks and the journal's size sampled along the way.
Target: memory and task count flat, under 5% growth after the warm-up.

    python benchmarks/soak.py [--quick] [--ticks 1000000] [--samples 20] [--warmup 0.1] [--unpaced]

What runs is the service's trading path on the simulated exchange, as `deltakeeper run` wires it, minus the
HTTP server and the scheduled jobs: the bundled SOL history replayed from now (then a seeded random walk),
a tick every 30 simulated seconds (the default `DK_SIM_TICK_SECS`), each tick quoting spot, the linear and
the inverse perpetual into `SimEngine.on_quote` through the in-process gateway (`SimGateway`), the
market-maker scenario moving the spot inventory every 5 simulated minutes; the gateway's quote and
account-event streams consumed as the Runner consumes them (`MarketState.on_quote` and
`Hedger.on_quote`; fills, orders and snapshots to the Hedger), so that the Hedger recomputes the delta,
decides with the default band (1% of gross), checks risk, journals and places its hedge orders through the
gateway into the engine. The journal is SQLite in a temporary folder. The engine keeps its default
history (open orders, and a week or 1,000 of the closed orders, fills and funding payments).

Pacing: the simulated clock runs as fast as the event loop allows, and the feed is paced by the bot, as any
pipeline runs at the speed of its slowest stage: before each tick, while the bot has account events queued
that it has not taken yet, the feed waits until it has taken them all (`SimGateway(max_event_backlog=0)`),
and resumes as soon as it has. So the bot decides on an account as current as a live bot that keeps up would
(it still falls behind while it awaits a journal write: the largest backlog is printed). A slow bot is not
hidden by it: the feed only ever waits for the bot, so ticks per second is the bot's own rate (per interval
in the table: a cost that grows with the run shows as a fall), and the number of waits is printed. With
`--unpaced` the feed waits for nobody, as an exchange does: it runs far ahead of a bot that is journaling an
order, the gateway queues up to 10,000 events (some 10 MB of snapshots, a bounded backlog, not a leak) and
then drops the stream, which the soak reopens at once (the Runner reopens it and reconciles); the bot then
trades on an account view hours of simulated time old, and memory measures that queue more than the bot.

Samples (every `ticks / samples` ticks): resident memory and its heap part (/proc/self/statm: resident less
file-backed and shared pages), `asyncio.all_tasks()`, the journal's file size (with its WAL). Growth is
measured from the sample at the end of the warm-up (the first `--warmup` of the ticks: imports, caches and the
pools fill up) to the end, and to the largest sample after the warm-up. The journal grows on purpose (it is
the record of every decision and fill): its size is reported, not held to the target.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from _common import fmt_rate, machine, ratio_line, rss_bytes, table

from deltakeeper.adapters.journal import create_journal, upgrade
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import Service, ServiceOptions, build_service
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState, Quote
from deltakeeper.domain.policy import AssetPolicy, Band, BandUnit
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.risk import RiskLimits
from deltakeeper.logging import configure_logging
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import bundled_bars, replay_feed, synthetic_feed
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

TARGET_GROWTH = 0.05
MAX_BACKLOG = 0
TICK_SECS = 30
SEED = 1
HEDGE = "SOL/USDT:USDT"
Step = tuple[datetime, list[Quote]]


@dataclass
class Sample:
    tick: int
    wall_secs: float
    rss: int
    anon: int
    """The part of `rss` that is not file-backed (the heap); the rest maps files: libraries, the journal's
    WAL index."""
    tasks: int
    journal_bytes: int


class NoAlerts:
    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        return None


def feed(clock: SimClock) -> Iterator[Step]:
    """The simulator's default price path (bootstrap.build_sim_exchange): the bundled history from now,
    then a seeded random walk from where it ends."""
    bars = bundled_bars()
    replay = replay_feed(bars, tick_secs=TICK_SECS, seed=SEED, start=clock.now())
    history_secs = (bars[-1].ts - bars[0].ts).total_seconds()
    walk = synthetic_feed(start=clock.now() + timedelta(seconds=history_secs + 3600), price=bars[-1].close,
                          tick_secs=TICK_SECS, seed=SEED)
    return itertools.chain(replay, walk)


def journal_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


class Soak:
    def __init__(self, ticks: int, samples: int, db_path: Path, paced: bool) -> None:
        self.ticks = ticks
        self.paced = paced
        self.every = max(1, ticks // samples)
        self.db_path = db_path
        self.samples: list[Sample] = []
        self.fine = max(1, ticks // 2000)
        self.task_counts: list[tuple[int, int]] = []
        """(tick, open tasks) every `fine` ticks: transient order and alert tasks come and go, so the task
        count is compared window by window, by its mean (and its floor and peak are shown)."""
        self.quotes_seen = 0
        self.events_seen = 0
        self.events_pushed = 0
        self.reopened = 0
        self.feed_waits = 0
        self.max_backlog = 0
        self.trace = False
        self.warmup_tick = 0.0
        self.traced: tracemalloc.Snapshot | None = None
        """With --tracemalloc: the allocations at the end of the warm-up, to compare with the end's."""
        self.started = 0.0

    def sampled(self, steps: Iterator[Step]) -> Iterator[Step]:
        """The feed, cut at `ticks`, taking a sample every `every` ticks (in the gateway's driver task)."""
        for tick, step in enumerate(itertools.islice(steps, self.ticks)):
            if tick % self.fine == 0:
                self.task_counts.append((tick, len(asyncio.all_tasks())))
            if tick % self.every == 0:
                self.sample(tick)
            yield step
        self.sample(self.ticks)

    def pushed(self, account_id: str, event: AccountEvent) -> None:
        self.events_pushed += 1

    def backlog(self) -> int:
        """Account events the engine has emitted that the bot has not handled yet."""
        return self.events_pushed - self.events_seen

    def sample(self, tick: int) -> None:
        self.samples.append(Sample(tick, time.perf_counter() - self.started, *rss_bytes(),
                                   len(asyncio.all_tasks()), journal_bytes(self.db_path)))
        if self.trace and tick >= self.warmup_tick and self.traced is None:
            self.traced = tracemalloc.take_snapshot()

    async def run(self) -> Service:
        url = f"sqlite:///{self.db_path}"
        await asyncio.to_thread(upgrade, url)
        journal = create_journal(url)
        clock = SimClock(float("inf"))
        engine = SimEngine(default_instruments(), seed=SEED)
        engine.subscribe(self.pushed)
        gateway = SimGateway(engine, self.sampled(feed(clock)), clock,
                             InventoryScenario(ScenarioParams(seed=SEED)), "sim",
                             max_event_backlog=MAX_BACKLOG if self.paced else None)
        # Read through the engine, not the gateway: the gateway's first call starts the feed.
        state = MarketState(dict(engine.instruments), {}, {"SOL": HEDGE})
        limits = RiskLimits(
            max_order_usd=Decimal(50_000), max_daily_traded_usd=Decimal(10_000_000),
            max_position_usd=Decimal(1_000_000), stale_secs=60.0, price_collar_bps=Decimal(100),
        )
        hedger = build_service(gateway, journal, clock, NoAlerts(), state,
                               {"SOL": AssetPolicy("SOL", HEDGE, Band(BandUnit.PCT, Decimal(1)))},
                               ServiceOptions(limits, order_timeout_secs=10.0, state_clear_secs=300.0))
        hedger.ingest.on_account(engine.snapshot("sim", clock.now()))
        await hedger.daily.load(journal, clock.now())
        self.started = time.perf_counter()
        quotes, events = gateway.quotes([HEDGE]), gateway.account_events()  # starts the feed
        consumers = [asyncio.create_task(self.quotes(quotes, hedger)),
                     asyncio.create_task(self.events(gateway, events, hedger))]
        try:
            await gateway.join()
            await asyncio.gather(*consumers)
            await hedger.orders.drain()
        finally:
            for task in consumers:
                task.cancel()
            self.feed_waits = gateway.feed_waits
            await gateway.close()
            self.counts = await self.count_rows(journal)
            await journal.close()
        return hedger

    async def quotes(self, stream: AsyncIterator[Quote], hedger: Service) -> None:
        async for quote in stream:
            self.quotes_seen += 1
            if hedger.ingest.on_quote(quote):
                await hedger.cycle.on_quote(quote.symbol)

    async def events(self, gateway: SimGateway, stream: AsyncIterator[AccountEvent], hedger: Service) -> None:
        """Like the Runner: a stream that ends with an error (unpaced, the gateway ends an account stream
        whose reader fell 10,000 events behind, like a dropped websocket) is opened again, here at once."""
        while True:
            try:
                async for event in stream:
                    self.events_seen += 1
                    self.max_backlog = max(self.max_backlog, self.backlog())
                    await self.on_event(hedger, event)
                return
            except ExchangeUnavailable:
                self.reopened += 1
                self.events_seen = self.events_pushed  # what the dropped stream held is gone
                if gateway.feed_done:
                    return
                stream = gateway.account_events()

    @staticmethod
    async def on_event(hedger: Service, event: AccountEvent) -> None:
        if isinstance(event, Fill):
            await hedger.ingest.on_fill(event)
        elif isinstance(event, FundingPayment):
            await hedger.ingest.on_funding(event)
        elif isinstance(event, OrderState):
            await hedger.ingest.on_order(event)
        elif isinstance(event, AccountSnapshot) and hedger.ingest.on_account(event):
            for asset in hedger.policies:
                await hedger.cycle.evaluate(asset, scheduled=False)

    @staticmethod
    async def count_rows(journal: object) -> dict[str, int]:
        from sqlalchemy import func, select

        from deltakeeper.adapters.journal.models import decisions, fills, funding_payments, orders

        counts = {}
        async with journal.engine.connect() as conn:  # type: ignore[attr-defined]
            for table_ in (decisions, orders, fills, funding_payments):
                counts[table_.name] = int(await conn.scalar(select(func.count()).select_from(table_)) or 0)
        return counts


def growth(samples: list[Sample], start: int, value: str) -> tuple[float, float]:
    """(end / warm-up - 1, max after warm-up / warm-up - 1) of one sampled value."""
    base = getattr(samples[start], value)
    after = [getattr(s, value) for s in samples[start:]]
    return after[-1] / base - 1, max(after) / base - 1


def interval_rate(samples: list[Sample], i: int) -> str:
    """Ticks per second since the previous sample: a cost that grows with the run shows as a fall."""
    if i == 0 or samples[i].wall_secs <= samples[i - 1].wall_secs:
        return ""
    here, before = samples[i], samples[i - 1]
    return fmt_rate((here.tick - before.tick) / (here.wall_secs - before.wall_secs))


@dataclass
class Window:
    mean: float
    low: int
    high: int

    def __str__(self) -> str:
        return f"mean {self.mean:.2f} (min {self.low}, max {self.high})"


def task_windows(counts: list[tuple[int, int]], warmup_tick: float, ticks: int) -> tuple[Window, Window]:
    """The open task counts in the tenth of the run just after the warm-up, and in its last tenth. A
    task that never ends raises the floor and the mean for good; an order's or an alert's task lives
    for a moment, and only makes the peak."""
    span = ticks / 10
    early = [n for tick, n in counts if warmup_tick <= tick < warmup_tick + span]
    late = [n for tick, n in counts if tick >= ticks - span]
    return tuple(Window(sum(w) / len(w), min(w), max(w)) for w in (early, late))  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 ticks (the smoke test's run)")
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the ticks before the baseline")
    parser.add_argument("--unpaced", action="store_true",
                        help="the feed waits for nobody (the bot may lose its account stream and reopen it)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also show where the memory added after the warm-up was allocated (slower)")
    args = parser.parse_args()
    ticks = 20_000 if args.quick else args.ticks
    configure_logging("error")  # the bot's info and warning lines would cost more than the ticks
    logging.getLogger().setLevel(logging.ERROR)

    print(f"benchmark 5: soak, {ticks:,} ticks through the simulated exchange at full speed")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="dk-soak-") as folder:
        soak = Soak(ticks, args.samples, Path(folder) / "journal.db", paced=not args.unpaced)
        soak.warmup_tick = args.warmup * ticks
        if args.tracemalloc:
            soak.trace = True
            tracemalloc.start()
        gc.collect()
        hedger = asyncio.run(soak.run())
        if soak.traced is not None:
            gc.collect()
            grown = [stat for stat in tracemalloc.take_snapshot().compare_to(soak.traced, "lineno")
                     if stat.size_diff > 0]
            grown.sort(key=lambda stat: -stat.size_diff)
            total = sum(stat.size_diff for stat in grown)
            print(f"Python allocations added after the warm-up (tracemalloc, which itself inflates the RSS): "
                  f"{total / 2**20:.2f} MiB, largest first:")
            for stat in grown[:12]:
                print(f"  {stat}")
    samples = soak.samples
    elapsed = samples[-1].wall_secs
    start = min(range(len(samples)), key=lambda i: abs(samples[i].tick - args.warmup * ticks))
    orders = dict(sorted(hedger.counters.orders.items()))
    print(f"{elapsed:.1f} s wall, {fmt_rate(ticks / elapsed)} ticks/s; "
          f"the bot saw {soak.quotes_seen:,} quotes of {HEDGE} and {soak.events_seen:,} account events")
    pacing = (f"waited {soak.feed_waits:,} times for the bot to take its backlog" if soak.paced
              else "waited for nobody (--unpaced)")
    print(f"orders {orders}, {hedger.counters.fills:,} fills, {hedger.counters.errors} errors; the feed "
          f"{pacing} (largest backlog {soak.max_backlog:,} account events); the account stream overflowed "
          f"{soak.reopened} times")
    print(f"journal rows: {soak.counts}")
    print()
    print(table(
        ["tick", "wall s", "ticks/s", "RSS MiB", "heap MiB", "tasks", "journal KiB", ""],
        [[f"{s.tick:,}", f"{s.wall_secs:.1f}", interval_rate(samples, i), f"{s.rss / 2**20:.1f}",
          f"{s.anon / 2**20:.1f}", s.tasks, f"{s.journal_bytes / 1024:,.0f}",
          "<- warm-up ends" if i == start else ""]
         for i, s in enumerate(samples)],
    ))
    print()
    rss_end, rss_max = growth(samples, start, "rss")
    anon_end, _ = growth(samples, start, "anon")
    tasks_early, tasks_late = task_windows(soak.task_counts, samples[start].tick, ticks)
    worst_tasks = tasks_late.mean / tasks_early.mean - 1
    journal_end, _ = growth(samples, start, "journal_bytes")
    worst_rss = max(rss_end, rss_max)
    target = f"growth < {TARGET_GROWTH:.0%}"
    print(ratio_line("resident memory growth after warm-up / 5%", worst_rss / TARGET_GROWTH, target,
                     worst_rss < TARGET_GROWTH,
                     f"end {rss_end:+.1%}, max {rss_max:+.1%} (heap {anon_end:+.1%}, "
                     f"{(samples[-1].anon - samples[start].anon) / 2**20:+.1f} MiB)"))
    print(ratio_line("open tasks growth after warm-up / 5%", max(worst_tasks, 0) / TARGET_GROWTH, target,
                     worst_tasks < TARGET_GROWTH,
                     f"{worst_tasks:+.1%}: {tasks_early} in the tenth after the warm-up, {tasks_late} in the "
                     f"last tenth (every {soak.fine:,} ticks)"))
    print(f"journal size after warm-up: {journal_end:+.0%} (grows with the record, not held to the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
