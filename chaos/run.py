"""The fault suite: the real bot trading through the fault-injecting proxy against the Bybit-v5 emulator,
one fault after another, then all of them mixed; it prints what went wrong, in figures.

    python chaos/run.py            # the long run: each fault alone, then the mix (a few minutes)
    python chaos/run.py --short    # under a minute: three phases (tests/e2e/test_chaos_short.py)

In this process: the emulator (`deltakeeper.sim.bybit.server.serve`, the market-maker scenario moving the
account's SOL inventory, 60 simulated seconds per wall second, a quote every 3 simulated seconds) and the
proxy (`deltakeeper.sim.fault_proxy.FaultProxy`) in front of it. In a subprocess: `deltakeeper run` with
DK_EXCHANGE=bybit, DK_EXCHANGE_URL=the proxy, the emulator's key, its own SQLite journal in a temporary
folder, JSON logs. Each phase switches its faults on in the proxy for its duration (moving the account's SOL
holding by three bands every `KICK_SECS`, so that the bot hedges through every fault), switches them off, and
waits for the bot to recover; after the last one the bot trades on without faults for `SETTLE_SECS`, is
stopped with SIGTERM, and the emulator's own records (its engine, read in this process) are compared with
the journal (`deltakeeper journal ... --format json`).

Figures:
- duplicate orders: orders on the exchange beyond what the decisions asked for: a client order id placed
  twice, more exchange orders for one decision than the journal has for it, orders with our prefix the
  journal does not know, and orders that traded while the journal says they did not (the bot decided again
  on an account without them);
- lost fills: the account's executions on the exchange that the journal does not hold once the bot has
  settled and stopped;
- orders on corrupted data: orders whose reference price in the journal is off every true mark of their
  market in the seconds before they were journaled by more than the price collar (`DK_PRICE_COLLAR_BPS`,
  100 bps), or within 0.5% of an absurd price the proxy injected for that market in the 5 s before;
- corrupted messages injected: corrupted, absurd and duplicated websocket frames, and malformed or absurd
  REST answers;
- time to recover, per phase: from the end of the fault to the first moment the bot can trade again: `/readyz`
  200, every stream's last quote younger than `FRESH_SECS` (`/api/status`), no order in flight, trading
  `active` (polled every 0.2 s).

- phases leaving the hedge off: the account's SOL delta on the exchange (sampled every 0.2 s), during a
  phase's faults or the recovery after them, further than 10 bands (of the bot's last decision) from the
  target: the hedge lost or doubled, whatever the orders that did it. The table also shows the deviation
  1 s after the recovery.

Exit status 1 when any duplicate order, lost fill, order on corrupted data or phase leaving the hedge off
is found, or the bot died; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

import aiohttp  # noqa: E402

from deltakeeper.domain.orders import Quote  # noqa: E402
from deltakeeper.sim.bybit.server import RunningServer, serve  # noqa: E402
from deltakeeper.sim.fault_proxy import FaultProxy  # noqa: E402

KEY, SECRET = "dk-chaos-key", "dk-chaos-secret"
SPEED = 60
TICK_SECS = 3
"""A quote every 50 ms of wall time, each market's price moving per wall second as it does per minute: an
order on a quote that is a few seconds old is not far off the market (a faster clock would make every quote
the bot may still trade on, up to `DK_STALE_SECS` old, look corrupted)."""
ASSET = "SOL"
COLLAR_BPS = Decimal(100)
MARK_WINDOW_SECS = 3.0
"""An order's reference price is compared with the true marks of the last this many seconds before it."""
ABSURD_WINDOW_SECS = 5.0
ABSURD_MATCH = Decimal("0.005")
KICK_COIN = Decimal(30)
KICK_SECS = 8.0
"""Every `KICK_SECS` of a phase, from its start, the account's SOL holding moves by `KICK_COIN` (some three
bands; up and down in turn, paid in USDT at the mid), so that every phase has hedges to trade through its
faults on top of the market-maker scenario's own flows."""
PRE_HEDGE = {"SOLUSDT": "1000", "BTCUSDT": "0.2", "ETHUSDT": "2"}
PRE_HEDGE_ID = "chaos-pre-hedge"
"""The client order id prefix of those orders."""
"""With `--start-hedged`, short perpetuals opened before the bot starts (not counted as the bot's): the
bot starts with its hedges open, as after a restart. Before issue 11's item 5 was fixed, such a bot never
traded (its first quote of an asset not priced yet raised `no USD price for SOL`)."""
HEDGE_CHECK_DELAY_SECS = 1.0
HEDGE_OFF_BANDS = Decimal(10)
"""A phase leaves the hedge off when, during its faults or the recovery after them, the account's SOL delta
was further than this many bands from the target (a kick is some three bands, the scenario's own flows a few
more while the bot cannot trade; the whole hedge is some two hundred)."""
FRESH_SECS = 2.0
"""A stream whose last quote is younger than this is flowing again."""
CORRUPTED_KINDS = ("ws_corrupt_", "ws_absurd", "ws_duplicate", "rest_absurd", "rest_malformed_")
BOT_ENV = {
    "DK_EXCHANGE": "bybit",
    "DK_API_KEY": KEY,
    "DK_API_SECRET": SECRET,
    "DK_HTTP_PORT": "0",
    "DK_LOG_FORMAT": "json",
    "DK_RECOMPUTE_SECS": "1",
    "DK_RECONCILE_SECS": "10",
    "DK_ORDER_TIMEOUT_SECS": "5",
    "DK_STATE_CLEAR_SECS": "10",
    "DK_POLICY": "band",  # a fixed narrow band, to the target: the runner's inventory moves force hedges
    "DK_REBALANCE_TO": "target",
    "DK_DEFAULT_BAND_PCT": "0.5",
    "DK_EXTERNAL__BTC": "0.2",
    "DK_EXTERNAL__ETH": "2",
}
"""SOL from the account, BTC and ETH held elsewhere (`DK_EXTERNAL__*`): three assets hedged, three quote
streams to fault."""


@dataclass(frozen=True)
class Phase:
    name: str
    faults: dict[str, Any]
    secs: float
    by_path: dict[str, dict[str, Any]] = field(default_factory=dict)
    """REST paths with settings of their own (`FaultProxy.set_faults(path=...)`)."""


LOOKUPS_FAIL = {"rest_5xx": 1.0}
UNKNOWN_OUTCOMES = {"/v5/order/create": {"rest_drop_after": 1.0}, "/v5/order/realtime": LOOKUPS_FAIL,
                    "/v5/order/history": LOOKUPS_FAIL, "/v5/execution/list": LOOKUPS_FAIL}
"""Issue 11's unknown outcome: every order placement reaches the exchange and its answer is lost (the
connection closes), and every look-up of the order answers 503, for longer than the bot's order timeout
(`DK_ORDER_TIMEOUT_SECS`, 5 s here)."""
MIX = {"ws_drop": 0.002, "rest_5xx": 0.05, "rest_429": 0.05, "rest_hang": 0.02, "rest_drop": 0.03,
       "rest_drop_after": 0.03, "rest_hang_after": 0.03, "rest_delay": 0.05, "ws_delay": 0.01,
       "rest_malformed": 0.05, "ws_corrupt": 0.2, "ws_absurd": 0.03, "rest_absurd": 0.05, "ws_duplicate": 0.2,
       "hang_secs": 30, "delay_ms": 300}
PHASES = {
    "long": [
        Phase("websocket drops", {"ws_drop": 0.005}, 20),
        Phase("REST 5xx", {"rest_5xx": 0.3}, 20),
        Phase("REST 429 + Retry-After", {"rest_429": 0.3, "retry_after_secs": 2}, 20),
        Phase("REST hangs", {"rest_hang": 0.1, "hang_secs": 30}, 20),
        Phase("REST drops", {"rest_drop": 0.15, "rest_drop_after": 0.1}, 20),
        Phase("delays", {"rest_delay": 0.3, "ws_delay": 0.02, "delay_ms": 500}, 20),
        Phase("order answers lost, look-ups failing", {}, 25, UNKNOWN_OUTCOMES),
        Phase("malformed REST answers", {"rest_malformed": 0.3}, 20),
        Phase("corrupted websocket frames", {"ws_corrupt": 0.6}, 40),
        Phase("absurd prices", {"ws_absurd": 0.1, "rest_absurd": 0.3}, 30),
        Phase("duplicated order/execution frames", {"ws_duplicate": 1.0, "ws_topics": ["order", "execution"]},
              20),
        Phase("mix", MIX, 45),
    ],
    "short": [
        Phase("corrupted and absurd frames", {"ws_corrupt": 0.3, "ws_absurd": 0.05, "rest_absurd": 0.3}, 5),
        Phase("order answers lost, look-ups failing", {}, 8, UNKNOWN_OUTCOMES),
        Phase("mix", MIX, 5),
    ],
}
RECOVERY_LIMIT_SECS = {"long": 60.0, "short": 15.0}
SETTLE_SECS = {"long": 15.0, "short": 5.0}


# --- the bot ----------------------------------------------------------------------------------------


@dataclass
class Bot:
    popen: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    _port: int | None = None

    def events(self, name: str, since_secs: float = 0.0) -> list[dict[str, Any]]:
        """The bot's JSON log lines for event `name` stamped at or after `since_secs` (wall, epoch)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name and _epoch(record) >= since_secs:
                found.append(record)
        return found

    def alive(self) -> bool:
        return self.popen.poll() is None

    def http_port(self) -> int | None:
        if self._port is None:
            path = self.data_dir / "http_port"
            if path.exists() and path.read_text().strip():
                self._port = int(path.read_text())
        return self._port

    async def can_trade(self, session: aiohttp.ClientSession, ready_only: bool = False) -> bool:
        """Ready (`/readyz` 200), every stream's last quote younger than `FRESH_SECS`, no order in flight,
        and trading `active`."""
        port = self.http_port()
        if port is None:
            return False
        base, timeout = f"http://127.0.0.1:{port}", aiohttp.ClientTimeout(total=2)
        try:
            async with session.get(f"{base}/readyz", timeout=timeout) as answer:
                if answer.status != 200 or ready_only:
                    return answer.status == 200
            async with session.get(f"{base}/api/status", timeout=timeout) as answer:
                if answer.status != 200:
                    return False
                status = await answer.json()
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return False
        ages = [stream.get("age_secs") for stream in status.get("streams", {}).values()]
        return (bool(ages) and all(age is not None and age < FRESH_SECS for age in ages)
                and not status.get("in_flight") and status.get("trading", {}).get("state") == "active")


def _epoch(record: dict[str, Any]) -> float:
    stamp = record.get("timestamp")
    return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else 0.0


def start_bot(proxy_url: str, workdir: Path) -> Bot:
    data_dir = workdir / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env.update(BOT_ENV, DK_DATA_DIR=str(data_dir), DK_EXCHANGE_URL=proxy_url)
    log = workdir / "bot.log"
    with (workdir / "bot.out").open("wb") as out, log.open("wb") as err:
        popen = subprocess.Popen([sys.executable, "-m", "deltakeeper", "run"], env=env, stdout=out,
                                 stderr=err)
    return Bot(popen, log, data_dir)


def stop_bot(bot: Bot) -> int:
    if bot.alive():
        bot.popen.send_signal(signal.SIGTERM)
    try:
        return bot.popen.wait(40)
    except subprocess.TimeoutExpired:
        bot.popen.kill()
        return bot.popen.wait(10)


def journal(bot: Bot, *views: str) -> list[list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env["DK_DATA_DIR"] = str(bot.data_dir)

    def read(view: str) -> list[dict[str, Any]]:
        done = subprocess.run([sys.executable, "-m", "deltakeeper", "journal", view, "--format", "json"],
                              env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"deltakeeper journal {view}: {done.stderr[-2000:]}")
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    with ThreadPoolExecutor(len(views)) as pool:
        return list(pool.map(read, views))


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    injected: Counter[str]
    recovery_secs: float | None
    deviation_bands: Decimal | None
    largest_deviation_bands: Decimal | None = None


@dataclass
class Truth:
    """The emulator's true marks, by market: (wall time, mark) in time order."""

    marks: dict[str, list[tuple[float, Decimal]]] = field(default_factory=lambda: defaultdict(list))

    def on_quote(self, quote: Quote) -> None:
        self.marks[quote.symbol].append((time.time(), quote.mark))


async def wait_recovered(bot: Bot, session: aiohttp.ClientSession, since: float, limit_secs: float,
                         ready_only: bool = False) -> float | None:
    """Seconds from `since` until the bot can trade again (`Bot.can_trade`); None past `limit_secs`."""
    while time.time() - since < limit_secs and bot.alive():
        if await bot.can_trade(session, ready_only):
            return time.time() - since
        await asyncio.sleep(0.2)
    return None


def kick(server: RunningServer, change_coin: Decimal) -> None:
    """Move the account's SOL holding by `change_coin`, paid in USDT at the spot mid (as the scenario
    moves it)."""
    engine, now = server.venue.engine, server.venue.clock.now()
    quote = engine.quote(f"{ASSET}/USDT")
    assert quote is not None
    engine.adjust_balance(KEY, ASSET, change_coin, now)
    engine.adjust_balance(KEY, "USDT", -(change_coin * quote.mid).quantize(Decimal("0.0001")), now)


def account_delta_coin(server: RunningServer) -> Decimal:
    """The account's SOL delta on the exchange: spot holding and linear positions (what the bot hedges)."""
    engine = server.venue.engine
    delta = engine.balances(KEY).get(ASSET, Decimal(0))
    for position in engine.positions(KEY):
        instrument = engine.instruments[position.symbol]
        if instrument.base == ASSET and not instrument.inverse:
            delta += position.contracts * instrument.contract_size
    return delta


def band_and_target(bot: Bot) -> tuple[Decimal, Decimal] | None:
    """The band and target (coins) of the bot's last decision on the asset."""
    cycles = [e for e in bot.events("rebalance_cycle") if e.get("asset") == ASSET]
    if not cycles or not Decimal(cycles[-1]["band_coin"]):
        return None
    return Decimal(cycles[-1]["band_coin"]), Decimal(cycles[-1]["target_coin"])


def deviation_in_bands(server: RunningServer, bot: Bot) -> Decimal | None:
    known = band_and_target(bot)
    return None if known is None else abs(account_delta_coin(server) - known[1]) / known[0]


@dataclass
class DeltaWatch:
    """The largest |delta - target| of the account on the exchange (coins), sampled every 0.2 s."""

    server: RunningServer
    target_coin: Decimal = Decimal(0)
    largest_coin: Decimal = Decimal(0)

    async def run(self) -> None:
        while True:
            deviation = abs(account_delta_coin(self.server) - self.target_coin)
            self.largest_coin = max(self.largest_coin, deviation)
            await asyncio.sleep(0.2)

    def take(self, bot: Bot) -> Decimal | None:
        """The largest deviation since the last call, in bands of the bot's last decision; starts anew."""
        known = band_and_target(bot)
        largest, self.largest_coin = self.largest_coin, Decimal(0)
        if known is None:
            return None
        self.target_coin = known[1]
        return largest / known[0]


async def run(mode: str, seed: int, workdir: Path, start_hedged: bool) -> int:
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):  # stop the bot on the way out
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    truth = Truth()
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=SPEED, seed=seed, tick_secs=TICK_SECS,
                         scenario=True)
    server.venue.quote_listeners.append(truth.on_quote)
    for symbol, qty in PRE_HEDGE.items() if start_hedged else ():
        server.venue.create_order(KEY, {"category": "linear", "symbol": symbol, "side": "Sell",
                                        "orderType": "Market", "qty": qty,
                                        "orderLinkId": f"{PRE_HEDGE_ID}-{symbol}"})
    proxy = FaultProxy(server.url, seed=seed)
    await proxy.start()
    bot = start_bot(proxy.url, workdir)
    results: list[PhaseResult] = []
    kicks = 0
    started = time.time()
    try:
        async with aiohttp.ClientSession() as session:
            print(f"emulator {server.url}, proxy {proxy.url}, bot pid {bot.popen.pid}, logs in {workdir}",
                  flush=True)
            baseline = await wait_recovered(bot, session, started, RECOVERY_LIMIT_SECS[mode], ready_only=True)
            await wait_recovered(bot, session, time.time(), RECOVERY_LIMIT_SECS[mode])  # the first hedges
            results.append(PhaseResult("start to /readyz, no faults", Counter(), baseline,
                                       deviation_in_bands(server, bot)))
            watch = DeltaWatch(server)
            watching = asyncio.create_task(watch.run())
            watch.take(bot)
            for phase in PHASES[mode]:
                if not bot.alive():
                    break
                before = Counter(proxy.injected)
                proxy.set_faults(**phase.faults)
                for path, faults in phase.by_path.items():
                    proxy.set_faults(path=path, **faults)
                phase_end = time.monotonic() + phase.secs
                while (left := phase_end - time.monotonic()) > 0:
                    kicks += 1
                    kick(server, KICK_COIN if kicks % 2 else -KICK_COIN)
                    await asyncio.sleep(min(KICK_SECS, left))
                proxy.clear_faults()
                ended = time.time()
                recovery = await wait_recovered(bot, session, ended, RECOVERY_LIMIT_SECS[mode])
                await asyncio.sleep(HEDGE_CHECK_DELAY_SECS)
                injected = Counter(proxy.injected)
                injected.subtract(before)
                results.append(PhaseResult(phase.name, +injected, recovery, deviation_in_bands(server, bot),
                                           watch.take(bot)))
                print(f"  {phase.name}: injected {sum(injected.values())}, recovered in "
                      f"{_secs(recovery)}", flush=True)
            await asyncio.sleep(SETTLE_SECS[mode])
            results.append(PhaseResult("settled", Counter(), None, deviation_in_bands(server, bot),
                                       watch.take(bot)))
            watching.cancel()
    finally:
        died = not bot.alive()
        code = await asyncio.to_thread(stop_bot, bot)
    try:
        orders, fills = await asyncio.to_thread(journal, bot, "orders", "fills")
        figures = compare(server, proxy, truth, orders, fills)
    finally:
        await proxy.close()
        await server.close()
    return report(results, figures, died, code, time.time() - started)


# --- the figures ------------------------------------------------------------------------------------


@dataclass
class Figures:
    duplicates: list[str]
    lost_fills: list[str]
    corrupted_price_orders: list[str]
    corrupted_injected: int
    injected: Counter[str]
    orders_on_exchange: int
    fills_on_exchange: int
    forwarded: dict[str, Any]


def compare(server: RunningServer, proxy: FaultProxy, truth: Truth, orders: list[dict[str, Any]],
            fills: list[dict[str, Any]]) -> Figures:
    engine = server.venue.engine
    ours = {row["client_order_id"]: row for row in orders}
    on_exchange = [o for o in engine.orders(KEY) if (o.client_order_id or "").startswith("dk")]
    duplicates: list[str] = []
    for cid, count in Counter(o.client_order_id for o in on_exchange).items():
        if count > 1:
            duplicates.append(f"{cid} placed {count} times")
    per_decision: Counter[int] = Counter()
    for order in on_exchange:
        row = ours.get(order.client_order_id or "")
        if row is None:
            duplicates.append(f"{order.client_order_id} on the exchange, unknown to the journal")
            continue
        per_decision[row["decision_id"]] += 1
        if order.filled_contracts > Decimal(row["filled_contracts"]):
            duplicates.append(f"{order.client_order_id} filled {order.filled_contracts} on the exchange, "
                              f"{row['filled_contracts']} in the journal ({row['status']})")
    journaled_per_decision = Counter(row["decision_id"] for row in orders)
    for decision, count in per_decision.items():
        if count > journaled_per_decision[decision]:
            duplicates.append(f"decision {decision}: {count} orders on the exchange, "
                              f"{journaled_per_decision[decision]} journaled")

    journal_trades = {row["trade_id"] for row in fills}
    exchange_fills = [f for f in engine.fills(KEY)
                      if not f.liquidation and not (f.client_order_id or "").startswith(PRE_HEDGE_ID)]
    lost = [f"{f.trade_id} ({f.symbol} {f.side} {f.amount_contracts} of {f.client_order_id})"
            for f in exchange_fills if f.trade_id not in journal_trades]

    corrupted = []
    absurd_by_symbol: dict[str, list[tuple[float, Decimal]]] = defaultdict(list)
    for entry in proxy.absurd_log:
        absurd_by_symbol[entry.symbol].append((entry.wall_secs, Decimal(repr(entry.price))))
    for row in orders:
        reference = row.get("reference_price")
        if not reference:
            continue
        price, at = Decimal(reference), datetime.fromisoformat(row["created_ts"]).timestamp()
        marks = truth.marks.get(row["symbol"], [])
        times = [t for t, _ in marks]
        window = marks[bisect_left(times, at - MARK_WINDOW_SECS): bisect_right(times, at)] or marks[
            max(0, bisect_right(times, at) - 1): bisect_right(times, at)]
        if window:
            off_bps = min(abs(price - mark) / mark * 10_000 for _, mark in window)
            if off_bps > COLLAR_BPS:
                corrupted.append(f"{row['client_order_id']} reference {price}, true mark "
                                 f"{window[-1][1]} ({off_bps:.0f} bps off)")
                continue
        bybit_symbol = server.venue.ids[row["symbol"]][1]
        injected = [p for t, p in absurd_by_symbol.get(bybit_symbol, [])
                    if at - ABSURD_WINDOW_SECS <= t <= at]
        if any(abs(price - p) <= p * ABSURD_MATCH for p in injected):
            corrupted.append(f"{row['client_order_id']} reference {price}: an injected absurd price")
    injected_all = Counter(proxy.injected)
    corrupted_injected = sum(n for kind, n in injected_all.items() if kind.startswith(CORRUPTED_KINDS))
    return Figures(duplicates, lost, corrupted, corrupted_injected, injected_all, len(on_exchange),
                   len(exchange_fills), proxy.counts())


def _secs(value: float | None) -> str:
    return "not recovered" if value is None else f"{value:.1f} s"


def report(results: list[PhaseResult], figures: Figures, died: bool, exit_code: int, wall_secs: float) -> int:
    print()
    rows = [("phase", "recovery", "|delta - target| (bands): largest, after", "injected")]
    for result in results:
        injected = ", ".join(f"{kind} {n}" for kind, n in sorted(result.injected.items())) or "-"
        deviation = " / ".join("-" if value is None else f"{value:.2f}"
                               for value in (result.largest_deviation_bands, result.deviation_bands))
        recovery = "-" if result.name == "settled" else _secs(result.recovery_secs)
        rows.append((result.name, recovery, deviation, injected))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))
    print()
    print(f"orders on the exchange        {figures.orders_on_exchange}")
    print(f"fills on the exchange         {figures.fills_on_exchange}")
    print(f"REST requests / ws frames     {figures.forwarded['rest_forwarded']} / "
          f"{figures.forwarded['ws_frames_forwarded']} forwarded")
    print(f"corrupted messages injected   {figures.corrupted_injected}")
    print(f"faults injected in all        {sum(figures.injected.values())}")
    print(f"duplicate orders              {len(figures.duplicates)}")
    print(f"lost fills                    {len(figures.lost_fills)}")
    print(f"orders on corrupted data      {len(figures.corrupted_price_orders)}")
    hedge_off = [f"{r.name}: {r.largest_deviation_bands:.1f} bands" for r in results[1:]
                 if r.largest_deviation_bands is not None and r.largest_deviation_bands > HEDGE_OFF_BANDS]
    print(f"phases leaving the hedge off  {len(hedge_off)}")
    print(f"bot                           {'DIED during the run' if died else 'ran throughout'}, "
          f"exit code {exit_code} at SIGTERM")
    print(f"wall time                     {wall_secs:.0f} s")
    for title, items in (("duplicate orders", figures.duplicates), ("lost fills", figures.lost_fills),
                         ("orders on corrupted data", figures.corrupted_price_orders),
                         (f"hedge off by more than {HEDGE_OFF_BANDS} bands", hedge_off)):
        for item in items[:20]:
            print(f"  {title}: {item}")
        if len(items) > 20:
            print(f"  {title}: ... and {len(items) - 20} more")
    failed = bool(figures.duplicates or figures.lost_fills or figures.corrupted_price_orders or hedge_off
                  or died)
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="three short phases, under a minute")
    parser.add_argument("--seed", type=int, default=1, help="seed of the emulator and the faults")
    parser.add_argument("--start-hedged", action="store_true",
                        help="open the hedges before the bot starts, as after a restart")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the bot's journal and log here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deltakeeper-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run("short" if args.short else "long", args.seed, workdir, args.start_hedged))


if __name__ == "__main__":
    sys.exit(main())
