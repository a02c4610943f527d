"""`DK_MODE=paper` end to end: `deltakeeper run` in a subprocess paper trades on the Bybit emulator's public
data (no API key), its prices moving at 3,600x so that Bybit's 8-hourly funding settles every 8 wall
seconds. The hedge fills in the paper engine, never on the emulator; the paper journal (its own default
file) holds the fills with the venue's fee, and the funding; `deltakeeper journal pnl` reads it back."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from deltakeeper.sim.bybit.server import serve
from tests.e2e.cli_helpers import clean_env, deltakeeper, journal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PERP = "SOL/USDT:USDT"
VENUE_TAKER_FEE = Decimal("0.0006")
"""Bybit's linear taker fee in ccxt's markets (the simulator's own markets charge 0.00055)."""


def count(database: Path, table: str) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database) as connection:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return 0


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def until(condition: Callable[[], bool], timeout_secs: float, what: str,
                bot: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_secs
    while not condition():
        assert bot.returncode is None, f"the bot exited:\n{tail(log)}"
        assert loop.time() < deadline, f"timed out waiting for {what}:\n{tail(log)}"
        await asyncio.sleep(0.25)


async def test_paper_mode_hedges_in_the_paper_engine_on_public_data_and_journals_it(tmp_path: Path) -> None:
    server = await serve("127.0.0.1", 0, {"dk-sim-key": "dk-sim-secret"}, speed=3600, seed=7, tick_secs=600,
                         scenario=False)
    env = clean_env(tmp_path, DK_MODE="paper", DK_EXCHANGE="bybit", DK_EXCHANGE_URL=server.url,
                    DK_POLICY="band", DK_REBALANCE_TO="target", DK_RECOMPUTE_SECS="1")
    paper_journal = tmp_path / "deltakeeper-paper.db"
    log = tmp_path / "bot.err"
    try:
        with log.open("wb") as stderr:
            bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "deltakeeper", "run", env=env,
                                                       stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
        try:
            await until(lambda: count(paper_journal, "fills") > 0, 60, "a paper fill", bot, log)
            await until(lambda: count(paper_journal, "funding_payments") >= 2, 60, "paper funding", bot, log)
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(bot.wait(), 60) == 0, tail(log)
        venue = server.venue
        assert venue.engine.orders("dk-sim-key") == [] and venue.engine.fills("dk-sim-key") == []
        assert not venue.api_calls  # no signed request at all: paper needs no key
    finally:
        await server.close()
    assert not (tmp_path / "deltakeeper.db").exists()  # the live journal's file is left alone

    fills, funding, pnl = await asyncio.gather(*(asyncio.to_thread(journal, view, env)
                                                 for view in ("fills", "funding", "pnl")))
    assert fills and {fill["symbol"] for fill in fills} == {PERP}
    assert sum(Decimal(fill["amount_contracts"]) for fill in fills if fill["side"] == "sell") > 900
    for fill in fills:
        notional = Decimal(fill["amount_contracts"]) * Decimal(fill["price"])
        assert Decimal(fill["fee"]) == (notional * VENUE_TAKER_FEE).quantize(Decimal("1E-8"))
    assert len(funding) >= 2 and all(Decimal(p["amount"]) != 0 for p in funding)
    [total] = [row for row in pnl if row["asset"] == "TOTAL"]
    assert Decimal(total["fees_usd"]) == sum(Decimal(fill["fee"]) for fill in fills)
    received = sum(Decimal(p["amount"]) for p in funding)
    assert Decimal(total["funding_received_usd"]) - Decimal(total["funding_paid_usd"]) == received
    assert total["fills"] == len(fills)


def test_deltakeeper_margin_refuses_paper_mode_without_a_portfolio_file(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DK_MODE="paper", DK_EXCHANGE="bybit")

    result = deltakeeper("margin", "--format", "json", env=env)

    assert result.returncode == 2
    assert "DK_MODE" in result.stderr and "--portfolio" in result.stderr
    assert result.stdout == ""


def test_paper_mode_on_the_simulated_exchange_is_refused_naming_dk_exchange(tmp_path: Path) -> None:
    result = deltakeeper("run", env=clean_env(tmp_path, DK_MODE="paper"))

    assert result.returncode == 2
    assert "DK_EXCHANGE" in result.stderr and "paper trading" in result.stderr
