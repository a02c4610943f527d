"""The console's endpoints against a 300,000-row journal: a running bot (the simulated exchange, a real
SQLite journal) whose HTTP server keeps answering /healthz while the console's reads are served, and whose
every console answer is bounded whatever the journal's size."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until

from deltakeeper.adapters.journal.models import decisions
from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app.console import CONSOLE_MAX_ROWS, RecentAlerts
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_http_server, build_runner, build_sim_exchange
from deltakeeper.config import Settings
from deltakeeper.domain.orders import Fill, Side

FILLS = 150_000
DECISIONS = 150_000
BATCH = 25_000
CONSOLE_READS = [
    "/api/status",
    "/api/console/summary",
    "/api/console/recent/fills?limit=20",
    "/api/console/recent/orders?limit=20",
    f"/api/console/recent/decisions?limit={CONSOLE_MAX_ROWS}",
    "/api/console/recent/decisions?limit=50&after_id=1000",
]
MAX_BODY_BYTES = 1_500_000
"""The largest console answer: CONSOLE_MAX_ROWS decisions of about 450 bytes."""


async def fill_journal(journal: SqlJournal, end: datetime) -> None:
    """FILLS fills (through the journal's batch write, a third with their fee in BTC) and DECISIONS decisions
    (SQLAlchemy Core, in batches), one every half second up to `end`."""
    for start in range(0, FILLS, BATCH):
        await journal.record_fills([
            Fill(f"t{i}", f"o{i}", None, "BTC/USDT:USDT", Side.BUY if i % 2 else Side.SELL, Decimal("0.01"),
                 Decimal(60000), Decimal("0.00001") if i % 3 == 0 else Decimal("0.33"),
                 "BTC" if i % 3 == 0 else "USDT", end - timedelta(seconds=(FILLS - i) / 2), Decimal(600))
            for i in range(start, min(start + BATCH, FILLS))
        ])
    money = {k: Decimal("1.5") for k in ("delta_coin", "delta_usd", "target_coin", "band_coin", "price_usd")}
    rest = {"asset": "SOL", "reason": "inside_band", "trading_state": "active", "detail": "",
            "recorded_at": end}
    async with journal.engine.begin() as conn:
        for start in range(0, DECISIONS, BATCH):
            await conn.execute(decisions.insert(), [
                {"decision_id": i + 1, "ts": end - timedelta(seconds=(DECISIONS - i) / 2), **money, **rest}
                for i in range(start, min(start + BATCH, DECISIONS))
            ])


@asynccontextmanager
async def serving(settings: Settings, journal: SqlJournal) -> AsyncIterator[tuple[Runner, str]]:
    exchange, clock = build_sim_exchange(settings)
    runner = await build_runner(settings, exchange, journal, clock, RecordingAlerts())
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    server = build_http_server(settings, runner, journal, RecentAlerts(RecordingAlerts()))
    port = await server.start()
    try:
        yield runner, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()
        stop.set()
        await asyncio.wait_for(task, 20)
        await exchange.close()


async def test_console_reads_are_bounded_and_healthz_answers_meanwhile_on_a_300k_row_journal(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, recompute_secs=1.0)
    async with journal_for(settings) as journal:
        await fill_journal(journal, datetime.now(UTC))
        async with serving(settings, journal) as (runner, base), aiohttp.ClientSession() as http:
            await until(lambda: bool(runner.service.decisions.last), 15, "the first decisions")
            finished: list[str] = []

            async def get(path: str) -> tuple[int, bytes]:
                async with http.get(f"{base}{path}") as response:
                    body = await response.read()
                finished.append(path)
                return response.status, body

            # Every console read three times over (three consoles open), then the liveness probe: it is
            # answered before the last of them, i.e. while they are served.
            reads = [asyncio.create_task(get(path)) for _ in range(3) for path in CONSOLE_READS]
            await asyncio.sleep(0)
            status, body = await get("/healthz")
            assert (status, json.loads(body)) == (200, {"alive": True})
            answers = await asyncio.gather(*reads)
            order = list(finished)
            too_many, _ = await get(f"/api/console/recent/decisions?limit={CONSOLE_MAX_ROWS + 1}")

    assert order.index("/healthz") < len(order) - 1, order
    for path, (status, body) in zip(CONSOLE_READS * 3, answers, strict=True):
        assert status == 200, (path, body[:300])
        assert len(body) <= MAX_BODY_BYTES, (path, len(body))
    first = answers[: len(CONSOLE_READS)]
    by_path: dict[str, Any] = {p: json.loads(body) for p, (_, body) in zip(CONSOLE_READS, first, strict=True)}
    chart = by_path[f"/api/console/recent/decisions?limit={CONSOLE_MAX_ROWS}"]
    assert len(chart) == CONSOLE_MAX_ROWS and [r["id"] for r in chart] == sorted(r["id"] for r in chart)
    assert chart[-1]["id"] > DECISIONS  # the newest rows: the bot's own decisions come after the 150,000
    assert len(by_path["/api/console/recent/fills?limit=20"]) == 20
    newer = by_path["/api/console/recent/decisions?limit=50&after_id=1000"]
    assert len(newer) == 50 and all(r["id"] > 1000 for r in newer)
    assert set(by_path["/api/console/summary"]) >= {"fees", "funding", "fees_usd", "alerts"}
    assert too_many == 400
