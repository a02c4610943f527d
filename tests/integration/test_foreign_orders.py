"""Another trader on the account (its own journal) places `dk` orders through the Bybit emulator: the bot
never adopts them, alerts `foreign_order_detected` and halts as `deltakeeper halt` does, whether it finds
them at start (reconciliation) or on the order stream while it runs."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.integration.frozen_emulator import KEY, LINEAR, SECRET, ccxt_client, frozen_emulator
from tests.integration.service_harness import RecordingAlerts, journal_for, until

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.adapters.journal import SqlJournal
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_runner
from deltakeeper.config import AssetSettings, Settings
from deltakeeper.domain.risk import TradingState
from deltakeeper.sim.bybit.server import RunningServer

pytestmark = pytest.mark.timeout(60)


class WallClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)


@asynccontextmanager
async def bot(server: RunningServer, tmp_path: Path
              ) -> AsyncIterator[tuple[Runner, SqlJournal, RecordingAlerts]]:
    """The bot on the emulator's account, SOL held inside a band too wide to trade: every order on the
    account is someone else's."""
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}", http_port=0,
                        policy="band",
                        assets={"SOL": AssetSettings(hedge=LINEAR, band_coin=Decimal(100_000))})
    exchange = CcxtExchange("bybit", clock=WallClock(), api_key=KEY, secret=SECRET, base_url=server.url,
                            rng=random.Random(1), ccxt_config={"enableRateLimit": False})
    alerts = RecordingAlerts()
    stop = asyncio.Event()
    try:
        async with journal_for(settings) as journal:
            runner = await build_runner(settings, exchange, journal, WallClock(), alerts)
            task = asyncio.create_task(runner.run(stop))
            try:
                yield runner, journal, alerts
            finally:
                stop.set()
                await task
    finally:
        await exchange.close()


async def place_resting(other: Any, client_order_id: str) -> None:
    """The other trader's buy far below the market, with our client-id prefix."""
    bid = (await other.fetch_ticker(LINEAR))["bid"]
    await other.create_order(LINEAR, "limit", "buy", 1, round(bid * 0.5, 2),
                             params={"clientOrderId": client_order_id})


async def assert_halted_on_foreign(runner: Runner, journal: SqlJournal, alerts: RecordingAlerts,
                                   foreign_ids: list[str]) -> None:
    await until(lambda: bool(alerts.of("foreign_order_detected")), 10, "the foreign order alert")
    await until(lambda: runner.service.trading.state is TradingState.HALTED, 5, "the halt")
    [(level, message)] = alerts.of("foreign_order_detected")[:1]
    assert level == "error"
    state = await journal.control_state()
    assert state.halted and state.by == "deltakeeper"
    assert any(f"foreign order {cid} on {LINEAR}" in state.reason for cid in foreign_ids)
    assert any(cid in message for cid in foreign_ids)
    assert alerts.of("halted")  # the operator's halt path: journaled, alerted, orders cancelled
    assert await journal.list_orders() == []  # nothing adopted


async def test_a_foreign_order_found_at_start_halts_before_any_trade(tmp_path: Path) -> None:
    async with frozen_emulator() as server, ccxt_client(server) as other:
        await place_resting(other, "dkother0")
        async with bot(server, tmp_path) as (runner, journal, alerts):
            await assert_halted_on_foreign(runner, journal, alerts, ["dkother0"])


async def test_a_foreign_order_on_the_stream_halts_the_running_bot(tmp_path: Path) -> None:
    async with frozen_emulator() as server, ccxt_client(server) as other:
        async with bot(server, tmp_path) as (runner, journal, alerts):
            await until(lambda: runner.scheduler is not None, 10, "the bot trading")
            placed: list[str] = []
            for n in itertools.count():  # until the account stream, subscribed in a moment, shows one
                placed.append(f"dkother{n}")
                await place_resting(other, placed[-1])
                if alerts.of("foreign_order_detected") or n == 20:
                    break
                await asyncio.sleep(0.3)
            await assert_halted_on_foreign(runner, journal, alerts, placed)
