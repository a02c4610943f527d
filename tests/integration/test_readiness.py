"""`/readyz` means "can trade safely now", and blindness past DK_BLIND_ALERT_SECS alerts: the bot wired as
`deltakeeper run` wires it, on the simulated exchange and a real SQLite journal, with its account reads
made to fail and its journal filled up (SQLite's `max_page_count`: a full disk, for this database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until

from deltakeeper.adapters.journal import SqlJournal, TraderLock
from deltakeeper.app.runner import Runner
from deltakeeper.app.watch import Watch
from deltakeeper.bootstrap import build_http_server, build_runner, build_sim_exchange
from deltakeeper.config import Settings
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.gateway import SimGateway


class Probe:
    """Polls /readyz and keeps its last answer."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.status = 0
        self.body: dict[str, Any] = {}

    async def poll(self) -> None:
        async with self.http.get(self.url) as response:
            self.status, self.body = response.status, await response.json()

    async def until(self, condition: Any, what: str, timeout_secs: float = 15) -> None:
        answers: list[tuple[int, dict[str, Any]]] = []

        async def check() -> None:
            await self.poll()
            answers.append((self.status, self.body))

        deadline = time.monotonic() + timeout_secs
        await check()
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last answers {answers[-3:]}")
            await asyncio.sleep(0.1)
            await check()


def ready(probe: Probe) -> bool:
    return probe.status == 200 and probe.body["ready"] is True and probe.body["failing"] == []


def failing(name: str) -> Any:
    return lambda probe: probe.status == 503 and name in probe.body["failing"]


class AccountGoesDark:
    """The simulated exchange, except that while `dark` its account cannot be read: REST reads fail (as an
    exchange answering 503 does) and the account stream pushes no snapshot (fills, orders still come)."""

    def __init__(self, exchange: SimGateway) -> None:
        self.exchange = exchange
        self.dark = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.exchange, name)

    async def fetch_account(self) -> AccountSnapshot:
        if self.dark:
            raise ConnectionError("503 Service Unavailable")
        return await self.exchange.fetch_account()

    async def account_events(self) -> AsyncIterator[AccountEvent]:
        async for event in self.exchange.account_events():
            if not (self.dark and isinstance(event, AccountSnapshot)):
                yield event


@asynccontextmanager
async def running(
    settings: Settings, journal: SqlJournal
) -> AsyncIterator[tuple[Runner, AccountGoesDark, RecordingAlerts, str]]:
    """The Runner wired as `deltakeeper run` wires it on the simulated exchange, and its /readyz URL."""
    sim, clock = build_sim_exchange(settings)
    assert isinstance(sim, SimGateway)
    exchange = AccountGoesDark(sim)
    alerts = RecordingAlerts()
    runner = await build_runner(settings, exchange, journal, clock, alerts)  # type: ignore[arg-type]
    server = build_http_server(settings, runner, journal)
    port = await server.start()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await until(lambda: runner.reconciled, 10, "the start")
        yield runner, exchange, alerts, f"http://127.0.0.1:{port}/readyz"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await server.stop()
        await sim.close()


async def set_max_pages(journal: SqlJournal, pages: int) -> None:
    """SQLite's `max_page_count` on the journal's one connection: at the current page count, a write that
    needs a new page fails with SQLITE_FULL, `database or disk is full`."""
    async with journal.engine.connect() as conn:
        await conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")


async def test_readyz_is_503_naming_the_account_while_account_reads_fail_and_blind_alerts_once(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, blind_alert_secs=1.0)
    async with (
        journal_for(settings) as journal,
        running(settings, journal) as (_runner, exchange, alerts, url),
        aiohttp.ClientSession() as http,
    ):
        probe = Probe(http, url)
        await probe.until(ready, "ready")
        assert set(probe.body["checks"]) >= {
            "reconciled",
            "account_read",
            "streams_fresh",
            "journal_write",
            "database",
        }

        exchange.dark = True
        await probe.until(failing("account_read"), "not ready for the account")
        check = probe.body["checks"]["account_read"]
        assert check["ok"] is False and check["age_secs"] > check["limit_secs"]
        await until(lambda: "blind" in alerts.events(), 10, "the blind alert")
        [(level, message)] = alerts.of("blind")
        assert level == "error" and "the account unreadable" in message
        assert "blind_cleared" not in alerts.events()

        exchange.dark = False
        await probe.until(ready, "ready again")
        await until(lambda: "blind_cleared" in alerts.events(), 10, "the blind_cleared alert")
        assert len(alerts.of("blind")) == 1 and len(alerts.of("blind_cleared")) == 1


async def test_readyz_is_503_naming_the_journal_while_its_writes_fail_until_one_succeeds(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with (
        journal_for(settings) as journal,
        running(settings, journal) as (_runner, _exchange, _alerts, url),
        aiohttp.ClientSession() as http,
    ):
        probe = Probe(http, url)
        await probe.until(ready, "ready")

        await set_max_pages(journal, 1)  # no page beyond those the file has: the disk is full
        await probe.until(failing("journal_write"), "not ready for the journal")
        assert "full" in probe.body["checks"]["journal_write"]["error"]
        assert probe.body["checks"]["database"]["ok"] is True  # reads still answer

        await set_max_pages(journal, 1_000_000)
        await probe.until(ready, "ready after a journal write succeeded")


async def test_blind_alerts_once_naming_what_is_missing_and_clears_once() -> None:
    alerts = RecordingAlerts()
    watch = Watch(SimpleNamespace(alerts=alerts), blind_alert_secs=60)  # type: ignore[arg-type]
    await watch.check_blind({"account": 5, "SOL/USDT:USDT": 1, "journal": 0})
    assert alerts.sent == []
    await watch.check_blind({"account": 5, "SOL/USDT:USDT": 1, "journal": 61})
    await watch.check_blind({"account": 75, "SOL/USDT:USDT": 70, "journal": 75})
    [(level, message)] = alerts.of("blind")
    assert level == "error" and "journal writes failing for 61 s" in message and "account" not in message
    await watch.check_blind({"account": 1, "SOL/USDT:USDT": 1, "journal": 0})
    await watch.check_blind({"account": 2, "SOL/USDT:USDT": 1, "journal": 0})
    assert alerts.events() == ["blind", "blind_cleared"]
    assert "SOL/USDT:USDT" in alerts.of("blind_cleared")[0][1]


async def test_readyz_is_503_naming_the_trader_lock_once_it_is_lost(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with (
        journal_for(settings) as journal,
        running(settings, journal) as (runner, _exchange, _alerts, url),
        aiohttp.ClientSession() as http,
    ):
        lock = TraderLock(lambda: asyncio.sleep(0))
        runner.service.trading.holds_lock = lock.held  # what bootstrap passes to build_runner
        probe = Probe(http, url)
        await probe.until(ready, "ready")

        lock.lose("the lock's database session ended")
        await probe.until(failing("trader_lock"), "not ready once the lock is lost")


async def test_healthz_stays_200_and_the_heartbeat_goes_on_while_account_reads_fail(tmp_path: Path) -> None:
    """Liveness is the loop's own tick: an exchange outage makes the bot not ready, never dead (a restart
    would not bring the exchange back)."""
    settings = make_settings(tmp_path)
    async with (
        journal_for(settings) as journal,
        running(settings, journal) as (runner, exchange, _alerts, url),
        aiohttp.ClientSession() as http,
    ):
        probe = Probe(http, url)
        await probe.until(ready, "ready")

        exchange.dark = True
        await probe.until(failing("account_read"), "not ready for the account")
        dark_since = time.time()
        await until(lambda: runner.last_beat is not None and runner.last_beat > dark_since, 10,
                    "a heartbeat while the account is unreadable")
        async with http.get(url.replace("/readyz", "/healthz")) as response:
            assert response.status == 200
        await probe.poll()
        assert failing("account_read")(probe)
