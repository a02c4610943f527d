"""The end-to-end loop, its reconciliation and a restart on the emulator's Binance USD-M dialect (the Bybit
dialect's are in test_bybit_two_process.py, whose helpers this reuses): `deltakeeper sim-exchange
--dialect binance` and `deltakeeper run` as two processes, the bot configured with
DK_EXCHANGE=binanceusdm, DK_EXCHANGE_URL, the keys and DK_DATA_DIR.

The bot hedges until it has completed two hedges and journaled a funding payment; it is stopped with
SIGTERM between fundings and started again on the same journal, reconciles, and hedges again. Then its
journal and the emulator's records, read through the stock ccxt `binanceusdm` client, agree: the same
orders (ids, final states, filled amounts), the same fills (trade ids, amounts, prices, fees, orders),
the same funding payments (ids, amounts)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.pro as ccxtpro
import pytest

from deltakeeper.sim.bybit.client import point_ccxt_at
from tests.e2e.cli_helpers import clean_env, deltakeeper
from tests.e2e.test_bybit_two_process import (  # noqa: F401 (the fixture that kills what is left)
    KEY,
    SECRET,
    Books,
    Process,
    _no_process_left,
    assert_books_agree,
    base_env,
    hedged,
    journal_books,
    spawn,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LINEAR = "SOL/USDT:USDT"
SPEED = 3600
"""Simulated seconds per wall second: the 8-hourly funding settles every 8 wall seconds."""
FUNDING_INTERVAL_MS = 8 * 3_600_000
FUNDING_QUIET_WALL_SECS = 2.0
"""The bot is stopped at least this long (wall) from a funding settlement, before or after it."""
BINANCE_STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled",
                  "CANCELED": "canceled", "EXPIRED": "canceled", "REJECTED": "rejected"}
"""Binance's order status -> the journal's status."""


@contextmanager
def emulator(workdir: Path) -> Iterator[str]:
    out = workdir / "emulator.out"
    process = spawn(["sim-exchange", "--port", "0", "--dialect", "binance"],
                    base_env(workdir / "emulator-data", DK_SIM_SPEED=str(SPEED)), out,
                    workdir / "emulator.err")

    def listening() -> str | bool:
        lines = out.read_text().splitlines()
        found = next((x for x in lines if x.startswith("listening on")), None)
        return found or process.popen.poll() is not None

    try:
        line = wait_for(listening, 30, "the emulator to listen")
        assert isinstance(line, str), process.text()[-3000:]
        yield line.removeprefix("listening on ").strip()
    finally:
        process.stop(signal.SIGTERM, 20)


def start_bot(url: str, data_dir: Path, workdir: Path, name: str) -> Process:
    env = base_env(data_dir, DK_EXCHANGE="binanceusdm", DK_EXCHANGE_URL=url, DK_API_KEY=KEY,
                   DK_API_SECRET=SECRET, DK_HTTP_PORT="0", DK_POLICY="band", DK_REBALANCE_TO="target")
    bot = spawn(["run"], env, workdir / f"{name}.out", workdir / f"{name}.err")
    wait_for(lambda: bot.events("service_started") or bot.popen.poll() is not None, 60, f"{name} to start")
    assert bot.popen.poll() is None, bot.text()[-3000:]
    return bot


def binance_client(url: str) -> Any:
    exchange = ccxtpro.binanceusdm({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(exchange, url)
    return exchange


async def _binance_books(url: str) -> tuple[Books, list[str]]:
    """Every order, trade and funding payment of the key on every market, and every order's client id as
    listed (to count repeats)."""
    exchange = binance_client(url)
    try:
        await exchange.load_markets()
        orders: list[dict[str, Any]] = []
        trades: list[dict[str, Any]] = []
        for symbol in exchange.symbols:
            orders += await exchange.fetch_orders(symbol, None, 1000)
            trades += await exchange.fetch_my_trades(symbol, None, 1000)
        funding = await exchange.fetch_funding_history(None, None, 1000)
    finally:
        await exchange.close()
    books = Books(
        orders={o["clientOrderId"]: {"exchange_order_id": o["id"], "symbol": o["symbol"],
                                     "status": BINANCE_STATUS[o["info"]["status"]],
                                     "filled": Decimal(o["info"]["executedQty"])} for o in orders},
        fills={t["id"]: (Decimal(t["info"]["qty"]), Decimal(t["info"]["price"]),
                         Decimal(t["info"]["commission"]), str(t["info"]["orderId"])) for t in trades},
        funding={p["id"]: (Decimal(p["info"]["income"]), int(p["info"]["time"])) for p in funding},
    )
    assert len(trades) == len(books.fills) and len(funding) == len(books.funding), "a record listed twice"
    return books, [o["clientOrderId"] for o in orders]


async def _funding_times(url: str) -> tuple[int, int]:
    """(the emulator's time, its next funding time) in ms, from the perpetual's mark price."""
    exchange = binance_client(url)
    try:
        info = (await exchange.fetch_mark_price(LINEAR))["info"]
        return int(info["time"]), int(info["nextFundingTime"])
    finally:
        await exchange.close()


def stop_between_fundings(url: str, bot: Process) -> int:
    """SIGTERM the bot at least FUNDING_QUIET_WALL_SECS away from a funding settlement; the emulator's
    time it was stopped at."""
    while True:
        now, next_funding = asyncio.run(_funding_times(url))
        interval = FUNDING_INTERVAL_MS // SPEED
        to_next = (next_funding - now) / 1000
        since_last = (now - (next_funding - interval)) / 1000
        if to_next > FUNDING_QUIET_WALL_SECS and since_last > FUNDING_QUIET_WALL_SECS:
            break
        time.sleep(to_next + FUNDING_QUIET_WALL_SECS if to_next <= FUNDING_QUIET_WALL_SECS else 0.5)
    code = bot.stop()
    assert code == 0, bot.text()[-3000:]
    return now


def test_the_bot_hedges_restarts_and_agrees_with_the_exchange_on_binance(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with emulator(tmp_path) as url:
        bot = start_bot(url, data_dir, tmp_path, "bot-1")
        wait_for(lambda: len(hedged(bot, 0)) >= 2 and bot.events("funding_recorded"), 40,
                 "two hedges and a funding payment", every=0.5)
        stop_between_fundings(url, bot)

        bot = start_bot(url, data_dir, tmp_path, "bot-2")
        assert bot.events("reconciled"), bot.text()[-3000:]
        wait_for(lambda: hedged(bot, 0), 40, "a hedge after the restart", every=0.2)
        assert not bot.events("order_task_failed")
        time.sleep(2)  # what the streams still bring after the hedge reaches the journal
        stopped = stop_between_fundings(url, bot)

        theirs, link_ids = asyncio.run(_binance_books(url))
        assert theirs.fills and theirs.funding and theirs.orders
        assert_books_agree(journal_books(data_dir), theirs, link_ids, stopped)


def test_sim_exchange_refuses_an_unknown_dialect_with_exit_2(tmp_path: Path) -> None:
    result = deltakeeper("sim-exchange", "--port", "0", "--dialect", "kraken", env=clean_env(tmp_path))

    assert result.returncode == 2
    assert "--dialect" in result.stderr and "bybit, binance" in result.stderr
    assert result.stdout == ""
