"""Issue 3's end-to-end test: `deltakeeper sim-exchange` and `deltakeeper run` as two processes, the bot
configured only with DK_EXCHANGE=bybit, DK_EXCHANGE_URL, the keys and DK_DATA_DIR (and DK_HTTP_PORT=0,
so that it binds a free port); the emulator runs 1800x, so that Bybit's 8-hourly funding settles every
16 wall seconds.

1. Baseline: the bot hedges; stopped with SIGTERM, its journal holds exactly the fills and funding
   payments the emulator recorded for the key (same ids, same amounts).
2. Faults, the bot running, each until it has hedged through it: websocket drops (`ws_drop` and
   `/sim/drop-websockets`), rate limits (retCode 10006 and HTTP 403), timeouts after acceptance
   (`timeout_after_accept` with a hang). Then two SIGKILLs with an order in flight, each followed by a
   restart on the same DK_DATA_DIR with the faults off:
   - the order held in the emulator's gateway (`order_latency_ms`), the journal's row pending: it lands
     after the bot died, while the restarted bot reconciles, which must wait for it;
   - the order matched and its fills pushed, the answer to its placement hanging (`timeout_after_accept`).
   The last restart trades until it has hedged, and is stopped with SIGTERM.
3. The books agree: no order sent twice, no order of ours unknown to the journal or in another final
   state there, no fill lost, funding equal by id and amount.

The emulator's records are read through the real ccxt.pro Bybit client pointed at it, following Bybit's
cursors page by page (ccxt's `paginate`); the journal through `deltakeeper journal ... --format json`.
The bot's JSON log paces the phases; the books are compared record by record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.pro as ccxtpro
import pytest

from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.faults import FaultConfig
from tests.e2e.cli_helpers import journal, journals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY, SECRET = "dk-sim-key", "dk-sim-secret"
SPEED = 1800
"""Simulated seconds per wall second: Bybit's 8-hourly funding settles every 16 wall seconds."""
LINEAR = "SOL/USDT:USDT"
PAGES = {"paginate": True, "paginationCalls": 100}
CATEGORIES = ({"type": "spot"}, {"subType": "linear"}, {"subType": "inverse"})
SETTLE_COINS: dict[str, list[str | None]] = {
    "spot": [None],
    "linear": ["USDT", "USDC"],
    "inverse": ["SOL", "BTC", "ETH"],
}
JOURNAL_STATUS = {
    "New": "open",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "canceled",
    "PartiallyFilledCanceled": "canceled",
    "Rejected": "rejected",
}
"""Bybit's orderStatus -> the journal's status."""
FUNDING_QUIET_WALL_SECS = 3.0
"""The bot is stopped at least this long (wall) from a funding settlement, before or after it."""


# --- processes --------------------------------------------------------------------------------------


def base_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env.update({"DK_DATA_DIR": str(data_dir), **overrides})
    return env


def wait_for(condition: Callable[[], Any], timeout_secs: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_secs
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        time.sleep(every)


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """The bot's JSON log lines for event `name`, from character `since` of its log on."""
        found = []
        for line in self.text()[since:].splitlines():
            with suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    found.append(record)
        return found

    def mark(self) -> int:
        return len(self.text())

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_secs: float = 40) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout_secs)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            raise AssertionError(f"pid {self.popen.pid} ignored {sig.name}:\n{self.text()[-3000:]}") from None


STARTED: list[subprocess.Popen[bytes]] = []
"""Every process this module started, killed at the end of the test if still running."""


def spawn(args: list[str], env: dict[str, str], out: Path, err: Path) -> Process:
    with out.open("ab") as stdout, err.open("ab") as stderr:
        popen = subprocess.Popen(
            [sys.executable, "-m", "deltakeeper", *args], env=env, stdout=stdout, stderr=stderr
        )
    STARTED.append(popen)
    return Process(popen, err)


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    try:
        yield
    finally:
        while STARTED:
            popen = STARTED.pop()
            if popen.poll() is None:
                popen.kill()
                popen.wait(10)


@contextmanager
def emulator(workdir: Path) -> Iterator[str]:
    out = workdir / "emulator.out"
    process = spawn(
        ["sim-exchange", "--port", "0"],
        base_env(workdir / "emulator-data", DK_SIM_SPEED=str(SPEED)),
        out,
        workdir / "emulator.err",
    )
    try:
        line = wait_for(
            lambda: (
                next((x for x in out.read_text().splitlines() if x.startswith("listening on")), None)
                or process.popen.poll() is not None
            ),
            30,
            "the emulator to listen",
        )
        assert isinstance(line, str), process.text()[-3000:]
        yield line.removeprefix("listening on ").strip()
    finally:
        process.stop(signal.SIGTERM, 20)


def start_bot(url: str, data_dir: Path, workdir: Path, name: str) -> Process:
    env = base_env(
        data_dir,
        DK_EXCHANGE="bybit",
        DK_EXCHANGE_URL=url,
        DK_API_KEY=KEY,
        DK_API_SECRET=SECRET,
        DK_HTTP_PORT="0",
    )
    bot = spawn(["run"], env, workdir / f"{name}.out", workdir / f"{name}.err")
    wait_for(lambda: bot.events("service_started") or bot.popen.poll() is not None, 60, f"{name} to start")
    assert bot.popen.poll() is None, bot.text()[-3000:]
    return bot


def post(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


NO_FAULTS = FaultConfig().as_dict()


def faults(url: str, **changes: float) -> None:
    """Switch the emulator's faults to `changes`, every other one off."""
    post(url, "/sim/faults", {**NO_FAULTS, **changes})


# --- the emulator's records, through ccxt ----------------------------------------------------------


def ccxt_client(url: str) -> Any:
    exchange = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(exchange, url)
    return exchange


@dataclass
class Books:
    """One side's records: orders by client order id, fills by trade id, funding by payment id."""

    orders: dict[str, dict[str, Any]]
    fills: dict[str, tuple[Decimal, Decimal, Decimal, str]]
    """trade id -> (amount, price, fee, exchange order id)"""
    funding: dict[str, tuple[Decimal, int]]
    """payment id -> (amount received, time in ms)"""


async def _emulator_books(url: str) -> tuple[Books, list[str]]:
    """Every order, trade and funding execution of the key in every category, and every order's link id
    as listed (to count repeats)."""
    exchange = ccxt_client(url)
    try:
        await exchange.load_markets()
        raw_orders: dict[str, dict[str, Any]] = {}
        trades: list[dict[str, Any]] = []
        funding: list[dict[str, Any]] = []
        for scope in CATEGORIES:
            category = scope.get("subType") or scope["type"]
            trades += await exchange.fetch_my_trades(None, None, None, {**scope, **PAGES})
            if category != "spot":
                funding += await exchange.fetch_funding_history(None, None, None, {**scope, **PAGES})
            for settle in SETTLE_COINS[category]:
                params = {**scope, **({"settleCoin": settle} if settle else {}), **PAGES}
                listed = [
                    *await exchange.fetch_open_orders(None, None, None, params),
                    *await exchange.fetch_canceled_and_closed_orders(None, None, None, params),
                ]
                raw_orders.update({order["id"]: order for order in listed})
    finally:
        await exchange.close()
    orders = {}
    for order in raw_orders.values():
        info = order["info"]
        orders[info["orderLinkId"]] = {
            "exchange_order_id": info["orderId"],
            "status": JOURNAL_STATUS[info["orderStatus"]],
            "filled": Decimal(info["cumExecQty"]),
            "symbol": order["symbol"],
        }
    fills = {}
    for trade in trades:
        info = trade["info"]
        assert info["execType"] == "Trade", info
        fills[info["execId"]] = (
            Decimal(info["execQty"]),
            Decimal(info["execPrice"]),
            Decimal(info["execFee"]),
            info["orderId"],
        )
    payments = {}
    for payment in funding:
        info = payment["info"]
        assert info["execType"] == "Funding", info
        payments[info["execId"]] = (-Decimal(info["execFee"]), int(info["execTime"]))
    link_ids = [order["info"]["orderLinkId"] for order in raw_orders.values()]
    assert len(trades) == len(fills) and len(funding) == len(payments), "an execution listed twice"
    return Books(orders, fills, payments), link_ids


def emulator_books(url: str) -> tuple[Books, list[str]]:
    return asyncio.run(_emulator_books(url))


async def _funding_times(url: str) -> tuple[int, int, int]:
    """(the emulator's time, its next funding time, the wall time between fundings), in ms: the emulator
    stamps everything on the wall clock, and funds every `fundingInterval` of its simulated time."""
    exchange = ccxt_client(url)
    try:
        await exchange.load_markets()
        book = await exchange.fetch_order_book(LINEAR)
        ticker = await exchange.fetch_ticker(LINEAR)
        interval_ms = int(exchange.market(LINEAR)["info"]["fundingInterval"]) * 60_000 // SPEED
        return int(book["timestamp"]), int(ticker["info"]["nextFundingTime"]), interval_ms
    finally:
        await exchange.close()


def stop_between_fundings(url: str, bot: Process) -> int:
    """SIGTERM the bot at least FUNDING_QUIET_WALL_SECS away from a funding settlement (a payment
    settled as the bot stops reaches it, or not, by chance); the emulator's time it was stopped at."""
    while True:
        now, next_funding, interval = asyncio.run(_funding_times(url))
        to_next = (next_funding - now) / 1000
        since_last = (now - (next_funding - interval)) / 1000
        if to_next > FUNDING_QUIET_WALL_SECS and since_last > FUNDING_QUIET_WALL_SECS:
            break
        time.sleep(to_next + FUNDING_QUIET_WALL_SECS if to_next <= FUNDING_QUIET_WALL_SECS else 0.5)
    code = bot.stop()
    assert code == 0, bot.text()[-3000:]
    return now


# --- the journal -----------------------------------------------------------------------------------


def journal_books(data_dir: Path) -> Books:
    orders_rows, fills_rows, funding_rows = journals(base_env(data_dir), "orders", "fills", "funding")
    orders = {row["client_order_id"]: row for row in orders_rows}
    fills = {
        row["trade_id"]: (
            Decimal(row["amount_contracts"]),
            Decimal(row["price"]),
            Decimal(row["fee"]),
            row["exchange_order_id"],
        )
        for row in fills_rows
    }
    funding = {row["payment_id"]: (Decimal(row["amount"]), 0) for row in funding_rows}
    return Books(orders, fills, funding)


def assert_books_agree(ours: Books, theirs: Books, link_ids: list[str], stopped_ms: int) -> None:
    # No order sent twice: each client order id at most once on the exchange, and each order there
    # belongs to a decision of its own, journaled before the order was sent.
    repeated = [link for link, count in Counter(link_ids).items() if count > 1]
    assert not repeated, f"client order ids sent more than once: {repeated}"
    ours_on_exchange = {link: order for link, order in theirs.orders.items() if link.startswith("dk")}
    assert len(ours_on_exchange) == len(theirs.orders), f"orders without our prefix: {theirs.orders}"
    decisions = [ours.orders[link]["decision_id"] for link in ours_on_exchange if link in ours.orders]
    assert 0 not in decisions, "an order on the exchange was not journaled before it was sent"
    assert len(decisions) == len(set(decisions)), "two orders on the exchange for one decision"

    # No order unknown to the journal: every one of ours there, with the exchange's id, final state and
    # filled amount.
    unknown = sorted(set(ours_on_exchange) - set(ours.orders))
    assert not unknown, f"orders on the exchange the journal does not know: {unknown}"
    for link, order in ours_on_exchange.items():
        row = ours.orders[link]
        assert (row["exchange_order_id"], row["status"], Decimal(row["filled_contracts"])) == (
            order["exchange_order_id"],
            order["status"],
            order["filled"],
        ), (link, row, order)
        assert order["status"] in ("filled", "canceled", "rejected"), (link, order)
    # ... and every journal order with an exchange id is exactly one of the exchange's; the others never
    # reached it, and the journal says so with a final state.
    by_exchange_id = Counter(order["exchange_order_id"] for order in theirs.orders.values())
    for link, row in ours.orders.items():
        assert row["status"] in ("filled", "canceled", "rejected"), f"left unsettled: {row}"
        if row["exchange_order_id"]:
            assert by_exchange_id[row["exchange_order_id"]] == 1, row
            assert theirs.orders.get(link, {}).get("exchange_order_id") == row["exchange_order_id"], row
        else:
            assert link not in theirs.orders, row
            assert row["status"] in ("rejected", "canceled") and Decimal(row["filled_contracts"]) == 0, row

    # No fill lost, none invented: the same trade ids with the same amounts, prices, fees and orders.
    assert ours.fills == theirs.fills

    # Funding: the same payment ids and amounts, but for those settled after the bot stopped.
    settled = {pid: amount for pid, (amount, ms) in theirs.funding.items() if ms <= stopped_ms}
    later = set(theirs.funding) - set(settled)
    assert {pid: amount for pid, (amount, _) in ours.funding.items() if pid not in later} == settled


# --- the test --------------------------------------------------------------------------------------


def test_bot_and_emulator_agree_through_faults_and_a_kill_mid_order(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with emulator(tmp_path) as url:
        # 1. Baseline: hedging and at least one funding settlement, then SIGTERM and compare.
        bot = start_bot(url, data_dir, tmp_path, "bot-1")
        wait_for(
            lambda: len(bot.events("rebalance_completed")) >= 2 and bot.events("funding_recorded"),
            40,
            "two hedges and a funding payment",
            every=0.5,
        )
        stopped = stop_between_fundings(url, bot)
        theirs, link_ids = emulator_books(url)
        assert theirs.fills and theirs.funding and theirs.orders
        assert_books_agree(journal_books(data_dir), theirs, link_ids, stopped)

        # 2. Faults, the bot running: each until the bot has hedged through it.
        bot = start_bot(url, data_dir, tmp_path, "bot-2")
        faults(url, ws_drop=0.02)
        mark = bot.mark()
        post(url, "/sim/drop-websockets")
        wait_for(lambda: hedged(bot, mark), 40, "a hedge while websockets drop", every=0.2)
        post(url, "/sim/drop-websockets")
        wait_for(lambda: bot.events("stream_resumed", mark), 20, "the streams back", every=0.2)

        faults(url, rate_limit=0.2, ip_rate_limit=0.1)
        mark = bot.mark()
        wait_for(lambda: hedged(bot, mark), 40, "a hedge under rate limits", every=0.2)

        faults(url, timeout_after_accept=1.0, hang_ms=2000)
        mark = bot.mark()
        wait_for(
            lambda: (
                set(hedged(bot, mark))
                & {e["client_order_id"] for e in bot.events("order_outcome_unknown", mark)}
            ),
            40,
            "a hedge whose placement was never answered, settled by client order id",
            every=0.2,
        )

        # Kill 1, the order in the exchange's gateway: the emulator holds each order placement 15 s before
        # matching it. The bot dies while its journal says pending; the order lands after the restarted
        # bot began to reconcile, which must wait for it rather than call it never sent.
        switched = time.time()
        faults(url, order_latency_ms=15_000)
        killed = [kill_while_pending(bot, data_dir, after=switched, max_age_secs=3.0)]
        faults(url)
        bot = start_bot(url, data_dir, tmp_path, "bot-3")
        assert bot.events("order_not_landed_yet") and bot.events("reconciled")[0]["orders_settled"] >= 1

        # Kill 2, the order matched and its answer hanging: the bot dies after the order's fills reached it
        # by websocket, before the answer to its placement.
        faults(url, timeout_after_accept=1.0, hang_ms=60_000)
        mark = bot.mark()
        cid = wait_for(
            lambda: next((e["order"] for e in bot.events("rebalance_cycle", mark) if e["order"]), None),
            40,
            "an order decided",
            every=0.05,
        )
        wait_for(
            lambda: [e for e in bot.events("fill_recorded", mark) if e["client_order_id"] == cid],
            10,
            "its fill",
            every=0.05,
        )
        time.sleep(0.3)
        bot.stop(signal.SIGKILL)
        answered = bot.events("order_outcome_unknown", mark) + bot.events("rebalance_completed", mark)
        assert cid not in {e["client_order_id"] for e in answered}, "killed too late: the order had ended"
        killed.append(cid)
        faults(url)

        # 3. Restart on the same journal: it reconciles, and trades on.
        bot = start_bot(url, data_dir, tmp_path, "bot-4")
        wait_for(lambda: hedged(bot, 0), 40, "a hedge after the restart", every=0.2)
        assert not bot.events("order_task_failed")
        # What the streams still bring after the hedge reaches the journal before the stop: a stop right
        # after it leaves that to the next start's reconciliation, which this comparison does not run.
        time.sleep(2)
        stopped = stop_between_fundings(url, bot)

        theirs, link_ids = emulator_books(url)
        ours = journal_books(data_dir)
        # The orders in flight at the kills reached the exchange, and the journal knows how they ended
        # (and never thought them unsent).
        assert not ours.orders[killed[0]]["reject_reason"], ours.orders[killed[0]]
        for cid in killed:
            assert cid in theirs.orders and ours.orders[cid]["status"] == theirs.orders[cid]["status"], cid
        assert_books_agree(ours, theirs, link_ids, stopped)


def hedged(bot: Process, mark: int) -> list[str]:
    """The client order ids of the hedges decided and completed since byte `mark` of the bot's log."""
    decided = {e["order"] for e in bot.events("rebalance_cycle", mark) if e["order"]}
    return [
        e["client_order_id"]
        for e in bot.events("rebalance_completed", mark)
        if e["client_order_id"] in decided
    ]


def kill_while_pending(bot: Process, data_dir: Path, after: float, max_age_secs: float) -> str:
    """SIGKILL the bot as soon as its journal shows an order pending that it journaled after `after` (wall
    time) and less than `max_age_secs` ago; that order's client order id."""
    env = base_env(data_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for row in journal("orders", env):
            created = datetime.fromisoformat(row["created_ts"]).timestamp()
            if row["status"] == "pending" and created > max(after, time.time() - max_age_secs):
                bot.stop(signal.SIGKILL)
                return str(row["client_order_id"])
        time.sleep(0.1)
    raise AssertionError("no order stayed pending long enough to kill the bot mid-order")
