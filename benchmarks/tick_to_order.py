"""Benchmark 1: tick to order, end to end, through the Bybit v5 emulator. Targets: p50 at most 1.2x the
baseline's, p99 at most 1.5x; inside the bot, from the tick's arrival to the order request, p50 under 2 ms.

    python benchmarks/tick_to_order.py [--quick] [--samples 100] [--profile FILE]

Everything runs in one process and one event loop, so `time.perf_counter()` stamps are comparable: the
emulator (`deltakeeper.sim.bybit.server.serve`, on loopback), the bot and the baseline.

Timed, per sample, for both contenders: from the emulator's push of the `tickers.SOLUSDT` websocket frame
(stamped just before the new quote goes to the engine and the frame is queued on every subscribed
connection, `Hub._push_public`; the emulator's own 100 ms publishing round is bypassed, so the push is
immediate) to the hedge order arriving at the emulator (stamped when the emulator's `/v5/order/create`
handler is entered, after its request parsing and HMAC check). Each contender has its own account (API key)
on the emulator; the samples alternate between them.

- The bot: `CcxtExchange` (`bootstrap.build_exchange`), the Runner and service from `bootstrap.build_runner`,
  the journal on SQLite (migrated, in a temporary folder), DK_ASSETS__SOL hedged on SOL/USDT:USDT with a
  band of 2 SOL. Before each sample the account's SOL balance is moved by +-10 SOL inside `OrderRunner.quiet`
  (so that the account event itself decides nothing) and the bot's state is waited for; the tick then
  moves the price by 2% and the bot, on that tick, finds its delta outside the band and hedges: it
  journals its decision and the pending order (one committed SQLite transaction) and sends a market order.
- The baseline: a bare ccxt.pro bybit client on its own account that awaits `watch_ticker('SOL/USDT:USDT')`
  and, on the armed sample's tick, makes one durable journal write (aiosqlite, the journal's PRAGMAs:
  WAL, synchronous=NORMAL; one row inserted, committed) and `create_order` (market, 10 SOL).

Rate limiters: the baseline is stock ccxt.pro with its default client-side rate limiter
(`enableRateLimit`), whose bucket refills only while a request waits in it, so its order waits out the
cost of its previous order (50 ms) however long it was idle. The bot's clients have the adapter's
`RefillingBucket` (the same rateLimit and endpoint costs, refilled by the time elapsed), so after idle time
its order goes at once. That wait is most of the baseline's time: the figures without it are printed
too, with their ratios, so that the rest compares like for like.

In-bot time: from the `Quote` reaching the Runner (`Runner._on_quote`, after ccxt's parsing and the
adapter's translation) to the order request (`CcxtExchange.place_order` called), via wrappers set up here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.pro
from _common import machine, ratio_line, table

from deltakeeper.domain.orders import Quote
from deltakeeper.logging import configure_logging
from deltakeeper.sim.bybit import rest
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.server import HUB, serve

SYMBOL = "SOL/USDT:USDT"
ASSET = "SOL"
BOT_KEY, BOT_SECRET = "dk-bench-bot", "dk-bench-bot-secret"
BASE_KEY, BASE_SECRET = "dk-bench-base", "dk-bench-base-secret"
BAND_COIN = Decimal(2)
MOVE_COIN = Decimal(10)
P50_TARGET, P99_TARGET, INBOT_TARGET_MS = 1.2, 1.5, 2.0
SAMPLE_TIMEOUT_SECS = 10.0
LOG_LEVEL = "warning"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1] if q < 100 else ordered[-1]


class Bench:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.venue = server.venue
        self.engine = self.venue.engine
        self.hub = server.runner.app[HUB]
        self.arrivals: dict[str, asyncio.Future[float]] = {}
        self.price = Decimal(0)

    def start_price(self, price: Decimal = Decimal(150)) -> None:
        """SOL's markets quoted (the feed, stepping once a simulated month, quotes BTC and ETH only)."""
        self.price = price
        for symbol in ("SOL/USDT", SYMBOL, "SOL/USD:SOL"):
            self.engine.on_quote(Quote(symbol, price - Decimal("0.01"), price + Decimal("0.01"), price,
                                       self.venue.clock.now(), index=price))

    def expect_order(self, account: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.arrivals[account] = future
        return future

    def install_order_stamp(self) -> None:
        key = ("POST", "/v5/order/create")
        route = rest.ROUTES[key]
        handler = route.handler
        arrivals = self.arrivals

        async def stamped(call: Any) -> Any:
            now = time.perf_counter()
            future = arrivals.pop(call.account, None)
            if future is not None and not future.done():
                future.set_result(now)
            return await handler(call)

        rest.ROUTES[key] = replace(route, handler=stamped)

    def push_tick(self, up: bool) -> float:
        """A new quote 2% away, pushed at once on every connection subscribed to the market; the push's
        perf_counter stamp."""
        self.price = (self.price * Decimal("1.02") if up else self.price / Decimal("1.02")).quantize(
            Decimal("0.001"))
        spread = Decimal("0.01")
        quote = Quote(SYMBOL, self.price - spread, self.price + spread, self.price, self.venue.clock.now(),
                      index=self.price, funding_rate=Decimal("0.0001"))
        started = time.perf_counter()
        self.engine.on_quote(quote)
        for connection in list(self.hub.connections):
            for topic in list(connection.topics):
                if connection.channel == "private":
                    continue
                parsed = self.hub._public_topic(connection.channel, topic)
                if parsed and parsed[2] == SYMBOL:
                    self.hub._push_public(connection, topic)
        return started


class Waits:
    """(start, end) perf_counter stamps of the calls to one async function of an object, which is
    wrapped in place: for ccxt's client-side rate limiter (`throttle`) and the journal's writes."""

    def __init__(self, owner: Any, name: str) -> None:
        self.spans: list[tuple[float, float]] = []
        original = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.spans.append((started, time.perf_counter()))

        setattr(owner, name, timed)

    def within(self, start: float, end: float) -> float:
        """Seconds spent in the calls that started in [start, end]."""
        return sum(min(b, end) - a for a, b in self.spans if start <= a <= end)


# -- the baseline: a bare ccxt.pro script -----------------------------------------------------------------

class Baseline:
    def __init__(self, url: str, db_path: str) -> None:
        self.client = ccxt.pro.bybit({"apiKey": BASE_KEY, "secret": BASE_SECRET, "enableRateLimit": True})
        point_ccxt_at(self.client, url)
        self.db_path = db_path
        self.armed: tuple[str, float] | None = None
        self.count = 0

    async def open(self) -> None:
        import aiosqlite

        await self.client.load_markets()
        self.throttle = Waits(self.client, "throttle")
        self.db = await aiosqlite.connect(self.db_path)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
            await self.db.execute(f"PRAGMA {pragma}")
        await self.db.execute("CREATE TABLE IF NOT EXISTS orders (client_order_id TEXT PRIMARY KEY, "
                              "symbol TEXT, side TEXT, amount TEXT, price TEXT, ts TEXT)")
        await self.db.commit()

    async def run(self) -> None:
        while True:
            ticker = await self.client.watch_ticker(SYMBOL)
            if self.armed is None:
                continue
            side, amount = self.armed
            self.armed = None
            self.count += 1
            client_id = f"base{self.count:08d}"
            await self.db.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                                  (client_id, SYMBOL, side, str(amount), str(ticker["last"]),
                                   datetime.now(UTC).isoformat()))
            await self.db.commit()
            await self.client.create_order(SYMBOL, "market", side, amount,
                                           params={"orderLinkId": client_id})

    async def close(self) -> None:
        await self.client.close()
        await self.db.close()


# -- the bot ------------------------------------------------------------------------------------------------

async def start_bot(url: str, data_dir: Path) -> tuple[Any, Any, Any, asyncio.Event, asyncio.Task[None]]:
    from deltakeeper.adapters.journal.migrate import upgrade
    from deltakeeper.adapters.journal.store import create_journal
    from deltakeeper.bootstrap import build_alerts, build_exchange, build_runner
    from deltakeeper.config import AssetSettings, Settings

    settings = Settings(
        exchange="bybit", exchange_url=url, api_key=BOT_KEY, api_secret=BOT_SECRET, data_dir=data_dir,
        database_url=None, assets={ASSET: AssetSettings(hedge=SYMBOL, band_coin=BAND_COIN)},
        recompute_secs=3600, reconcile_secs=3600, alert_urls=None, http_port=0, log_level=LOG_LEVEL,
        price_collar_bps=300,  # each tick moves 2 % from the one before, the collar's reference
    )
    await asyncio.to_thread(upgrade, settings.database)
    exchange, clock = build_exchange(settings)
    journal = create_journal(settings.database)
    alerts = build_alerts(settings)
    await alerts.start()  # type: ignore[attr-defined]
    runner = await build_runner(settings, exchange, journal, clock, alerts)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    return runner, journal, alerts, stop, task


class InBot:
    """perf_counter stamps of the Quote reaching the Runner and of the order request; once given a
    `profiler` (pyinstrument, `--profile`), the in-bot time of every sample profiled into one session."""

    def __init__(self, runner: Any) -> None:
        self.quote_at: float | None = None
        self.place_at: float | None = None
        self.armed = False
        self.profiler: Any = None
        on_quote = runner._on_quote
        exchange = runner.service.exchange
        place_order = exchange.place_order

        async def timed_on_quote(quote: Quote) -> None:
            if self.armed and quote.symbol == SYMBOL and self.quote_at is None:
                if self.profiler is not None:
                    self.profiler.start()
                self.quote_at = time.perf_counter()
            await on_quote(quote)

        async def timed_place_order(request: Any) -> Any:
            if self.armed and self.place_at is None:
                self.place_at = time.perf_counter()
                if self.profiler is not None and self.quote_at is not None:
                    self.profiler.stop()
            return await place_order(request)

        runner._on_quote = timed_on_quote
        self.throttle = Waits(exchange._rest, "throttle")
        journal = runner.service.journal
        self.journal = [Waits(journal, "record_decision"), Waits(journal, "record_order")]
        exchange.place_order = timed_place_order

    def arm(self) -> None:
        self.quote_at = self.place_at = None
        self.armed = True


def bot_position(hedger: Any) -> Decimal:
    account = hedger.state.account
    if account is None:
        return Decimal(0)
    return sum((p.contracts for p in account.positions if p.symbol == SYMBOL), Decimal(0))


async def wait_until(condition: Any, within_secs: float = SAMPLE_TIMEOUT_SECS) -> None:
    deadline = time.monotonic() + within_secs
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's state did not settle")
        await asyncio.sleep(0.001)


async def settle_bot(hedger: Any) -> None:
    await wait_until(lambda: not hedger.orders.in_flight and not hedger.orders.tasks)
    await asyncio.sleep(0.05)  # the fill's and the position's account events


async def bot_sample(
    bench: Bench, runner: Any, inbot: InBot, index: int
) -> tuple[float, float, float, float]:
    """(push to order arrival, in-bot time, ccxt throttle wait, journal writes in the in-bot time)"""
    hedger = runner.service
    move = MOVE_COIN if index % 2 == 0 else -MOVE_COIN
    async with hedger.orders.quiet(SAMPLE_TIMEOUT_SECS):
        target = hedger.state.account.balances.get(ASSET, Decimal(0)) + move
        bench.engine.adjust_balance(BOT_KEY, ASSET, move, bench.venue.clock.now())
        await wait_until(lambda: hedger.state.account.balances.get(ASSET, Decimal(0)) == target)
    await asyncio.sleep(0.005)
    arrival = bench.expect_order(BOT_KEY)
    inbot.arm()
    pushed = bench.push_tick(up=index % 2 == 0)
    ordered = await asyncio.wait_for(arrival, SAMPLE_TIMEOUT_SECS)
    inbot.armed = False
    if inbot.quote_at is None or inbot.place_at is None:
        raise RuntimeError("the bot's stamps are missing")
    inside = inbot.place_at - inbot.quote_at
    throttle = inbot.throttle.within(pushed, ordered)
    journal = sum(w.within(inbot.quote_at, inbot.place_at) for w in inbot.journal)
    await settle_bot(hedger)
    return ordered - pushed, inside, throttle, journal


async def baseline_sample(bench: Bench, baseline: Baseline, index: int) -> tuple[float, float]:
    """(push to order arrival, ccxt throttle wait)"""
    await asyncio.sleep(0.005)
    arrival = bench.expect_order(BASE_KEY)
    baseline.armed = ("sell" if index % 2 == 0 else "buy", float(MOVE_COIN))
    pushed = bench.push_tick(up=index % 2 == 0)
    ordered = await asyncio.wait_for(arrival, SAMPLE_TIMEOUT_SECS)
    await asyncio.sleep(0.05)  # the order's fill, before the next sample
    return ordered - pushed, baseline.throttle.within(pushed, ordered)


async def main(args: argparse.Namespace) -> int:
    configure_logging(LOG_LEVEL)  # as the service configures it (`DK_LOG_LEVEL`)
    print(f"benchmark 1: tick to order through the Bybit emulator; {machine()}")
    samples = args.samples if args.samples is not None else (6 if args.quick else 100)
    warmup = 2 if args.quick else 10
    with tempfile.TemporaryDirectory(prefix="dk-tick-to-order-") as tmp:
        server = await serve("127.0.0.1", 0, {BOT_KEY: BOT_SECRET, BASE_KEY: BASE_SECRET}, speed=1.0,
                             seed=7, scenario=False, tick_secs=30 * 86400)
        bench = Bench(server)
        bench.install_order_stamp()
        bench.start_price()
        now = bench.venue.clock.now()
        bench.engine.adjust_balance(BOT_KEY, ASSET, Decimal(-990), now)  # 10 SOL held: a small first hedge
        runner = journal = alerts = stop = task = None
        baseline = Baseline(server.url, str(Path(tmp) / "baseline.db"))
        baseline_task = None
        try:
            runner, journal, alerts, stop, task = await start_bot(server.url, Path(tmp) / "bot")
            inbot = InBot(runner)
            await baseline.open()
            baseline_task = asyncio.create_task(baseline.run())
            hedger = runner.service
            await wait_until(lambda: hedger.state.account is not None and SYMBOL in hedger.state.quotes, 30)
            # the feed's first tick may have replaced `start_price`'s: step 2 % from the price the bot holds
            # (the price gate holds a jump beyond DK_PRICE_JUMP_PCT until it is confirmed)
            bench.price = hedger.state.quotes[SYMBOL].mark
            # the first hedge of the 10 SOL held, on a first tick
            bench.push_tick(up=True)
            await wait_until(lambda: bot_position(hedger) != 0, 30)
            await settle_bot(hedger)
            await asyncio.sleep(0.2)  # the baseline's subscription is in place

            bot_times: list[float] = []
            inside_times: list[float] = []
            base_times: list[float] = []
            bot_throttle: list[float] = []
            bot_journal: list[float] = []
            base_throttle: list[float] = []
            for i in range(warmup + samples):
                if i == warmup and args.profile:
                    import pyinstrument

                    inbot.profiler = pyinstrument.Profiler(interval=0.0001, async_mode="disabled")
                bot, inside, throttle, journaled = await bot_sample(bench, runner, inbot, i)
                base, base_throttled = await baseline_sample(bench, baseline, i)
                if i >= warmup:
                    bot_times.append(bot)
                    inside_times.append(inside)
                    bot_throttle.append(throttle)
                    bot_journal.append(journaled)
                    base_times.append(base)
                    base_throttle.append(base_throttled)
        finally:
            if baseline_task is not None:
                baseline_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await baseline_task
            with contextlib.suppress(Exception):
                await baseline.close()
            if task is not None:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
                await runner.service.exchange.close()
                await journal.close()
                await alerts.aclose()  # type: ignore[attr-defined]
            await server.close()

    ms = 1000.0
    bot50, bot99 = pct(bot_times, 50) * ms, pct(bot_times, 99) * ms
    base50, base99 = pct(base_times, 50) * ms, pct(base_times, 99) * ms
    in50, in99 = pct(inside_times, 50) * ms, pct(inside_times, 99) * ms
    print(f"{samples} samples each after {warmup} warm-up, alternating bot and baseline")
    print("tick push (emulator) -> order create request entering the emulator's handler, ms:")
    print(table(["contender", "p50 ms", "p99 ms", "min ms", "max ms"], [
        ["bot (CcxtExchange + Runner, SQLite journal)", f"{bot50:.2f}", f"{bot99:.2f}",
         f"{min(bot_times) * ms:.2f}", f"{max(bot_times) * ms:.2f}"],
        ["baseline (bare ccxt.pro + aiosqlite)", f"{base50:.2f}", f"{base99:.2f}",
         f"{min(base_times) * ms:.2f}", f"{max(base_times) * ms:.2f}"],
        ["in bot: Quote at Runner -> place_order", f"{in50:.3f}", f"{in99:.3f}",
         f"{min(inside_times) * ms:.3f}", f"{max(inside_times) * ms:.3f}"],
    ]))
    print("of which (p50, ms): the client-side rate limiter's wait before the order (ccxt's `throttle`): "
          f"bot {pct(bot_throttle, 50) * ms:.2f} (the adapter's RefillingBucket), baseline "
          f"{pct(base_throttle, 50) * ms:.2f} (stock ccxt.pro's); the bot's journal write (decision + "
          f"pending order, one transaction) inside the in-bot time: {pct(bot_journal, 50) * ms:.3f}")
    no_throttle = [t - w for t, w in zip(bot_times, bot_throttle, strict=True)]
    base_no_throttle = [t - w for t, w in zip(base_times, base_throttle, strict=True)]
    bare50, bare99 = pct(no_throttle, 50) * ms, pct(no_throttle, 99) * ms
    base_bare50, base_bare99 = pct(base_no_throttle, 50) * ms, pct(base_no_throttle, 99) * ms
    print(f"without the rate limiter's wait (p50 / p99, ms): bot {bare50:.2f} / {bare99:.2f}, baseline "
          f"{base_bare50:.2f} / {base_bare99:.2f}: {bare50 / base_bare50:.2f}x / {bare99 / base_bare99:.2f}x "
          f"(for information; the ratios below use the full times, the baseline's with stock ccxt.pro's "
          f"rate limiter)")
    p50_ratio, p99_ratio = bot50 / base50, bot99 / base99
    print(ratio_line("p50 bot / baseline", p50_ratio, f"<= {P50_TARGET}x", p50_ratio <= P50_TARGET,
                     f"{bot50:.2f} ms vs {base50:.2f} ms"))
    print(ratio_line("p99 bot / baseline", p99_ratio, f"<= {P99_TARGET}x", p99_ratio <= P99_TARGET,
                     f"{bot99:.2f} ms vs {base99:.2f} ms"))
    in_ratio = in50 / INBOT_TARGET_MS
    print(ratio_line("in-bot p50 / 2 ms", in_ratio, "<= 1.0x", in50 < INBOT_TARGET_MS, f"{in50:.3f} ms"))
    if inbot.profiler is not None:
        args.profile.write_text(inbot.profiler.output_text(unicode=False, color=False, show_all=True))
        print(f"profile of the in-bot time (slowed down by the profiler) written to {args.profile}")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few samples: checks that it works")
    parser.add_argument("--samples", type=int, default=None, help="samples per contender (default 100)")
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE",
                        help="profile the in-bot time of the samples with pyinstrument (every 0.1 ms, the "
                             "main thread) into FILE as text; the profiler slows the bot down")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
