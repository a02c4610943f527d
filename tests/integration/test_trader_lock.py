"""Two services on one journal (in process, each on its own simulated exchange): the second stands by
while the first holds the trader lock, and takes over when the first loses it (PostgreSQL: its lock
session terminated) or stops. No order leaves the first after its loss."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs
from tests.alert_receiver import alert_receiver
from tests.integration.service_harness import journal_for, make_settings, until

from deltakeeper.adapters.journal import acquire_trader_lock, create_journal
from deltakeeper.app.reconciliation import reconcile
from deltakeeper.bootstrap import ExchangeFactory, build_sim_exchange, run_service
from deltakeeper.config import Settings
from deltakeeper.domain.errors import TraderLockLost
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderType, Quote, Side
from deltakeeper.domain.records import OrderRecord
from deltakeeper.ports import Clock, Exchange
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments

ORDER_SENT = "test_order_sent"
SOL = "SOL/USDT:USDT"


def recording(name: str, logs: list[dict[str, Any]], built: list[str]) -> ExchangeFactory:
    """The simulated exchange, each order it is sent recorded in `logs` among the services' log events
    (in the order they happen), and each build in `built`."""

    def build(settings: Settings) -> tuple[Exchange, Clock]:
        exchange, clock = build_sim_exchange(settings)
        built.append(name)
        place_order = exchange.place_order

        async def recorded(request: OrderRequest) -> OrderState:
            logs.append({"event": ORDER_SENT, "service": name})
            return await place_order(request)

        exchange.place_order = recorded  # type: ignore[method-assign]
        return exchange, clock

    return build


async def probe(data_dir: Path, path: str) -> int:
    """The status code of `path` on the HTTP server of the service in `data_dir`."""
    port = int((data_dir / "http_port").read_text())
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as answer:
        return answer.status


def events(logs: list[dict[str, Any]], event: str, service: str | None = None) -> list[int]:
    return [i for i, entry in enumerate(logs)
            if entry["event"] == event and (service is None or entry.get("service") == service)]


async def stop_all(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) or r is None for r in results), results


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_lost_lock_stops_the_first_trader_at_once_and_the_standby_takes_over(
    database_url: str, tmp_path: Path
) -> None:
    built: list[str] = []
    async with alert_receiver() as receiver:
        with capture_logs() as logs:
            first = asyncio.create_task(run_service(
                make_settings(tmp_path / "a", database_url=database_url, alert_urls=receiver.url),
                exchange_factory=recording("a", logs, built),
            ))
            await until(lambda: bool(events(logs, ORDER_SENT, "a")), 8, "the first service trading")
            second = asyncio.create_task(run_service(
                make_settings(tmp_path / "b", database_url=database_url),
                exchange_factory=recording("b", logs, built),
            ))
            await until(lambda: bool(events(logs, "trader_lock_waiting")), 5, "the second standing by")
            assert built == ["a"]  # the standby builds nothing, trades nothing

            session = await asyncpg.connect(
                make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
            )
            try:
                await session.execute("SELECT pg_terminate_backend(pid) FROM pg_locks "
                                      "WHERE locktype = 'advisory' AND granted")
            finally:
                await session.close()
            await until(lambda: bool(events(logs, ORDER_SENT, "b")), 8, "the second trading")
            await until(lambda: len(events(logs, "trader_lock_waiting")) == 2, 8, "the first standing by")
            await until(lambda: "trader_lock_lost" in receiver.events(), 5, "the alert")
            await stop_all(first, second)
    [lost] = events(logs, "trader_lock_lost")
    assert not [i for i in events(logs, ORDER_SENT, "a") if i > lost]
    assert built == ["a", "b"]
    assert events(logs, "reconciled")[-1] < events(logs, ORDER_SENT, "b")[0]  # the takeover reconciles first


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_the_standby_takes_over_when_the_trader_stops(database_url: str, tmp_path: Path) -> None:
    built: list[str] = []
    with capture_logs() as logs:
        first = asyncio.create_task(run_service(
            make_settings(tmp_path / "a", database_url=database_url),
            exchange_factory=recording("a", logs, built),
        ))
        await until(lambda: bool(events(logs, ORDER_SENT, "a")), 8, "the first service trading")
        second = asyncio.create_task(run_service(
            make_settings(tmp_path / "b", database_url=database_url),
            exchange_factory=recording("b", logs, built),
        ))
        await until(lambda: bool(events(logs, "trader_lock_waiting")), 5, "the second standing by")
        assert await probe(tmp_path / "b", "/healthz") == 200  # a standby is alive, and not ready
        assert await probe(tmp_path / "b", "/readyz") == 503
        await stop_all(first)
        await until(lambda: bool(events(logs, ORDER_SENT, "b")), 8, "the second trading")
        await stop_all(second)
    assert built == ["a", "b"]
    assert not events(logs, "trader_lock_lost")


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_standby_leaves_the_schema_to_the_lock_holder(database_url: str, tmp_path: Path) -> None:
    built: list[str] = []
    async with acquire_trader_lock(database_url, tmp_path / "a"):
        with capture_logs() as logs:
            standby = asyncio.create_task(run_service(
                make_settings(tmp_path / "b", database_url=database_url),
                exchange_factory=recording("b", logs, built),
            ))
            await until(lambda: bool(events(logs, "trader_lock_waiting")), 5, "the standby")
            journal = create_journal(database_url)
            try:
                async with journal.engine.connect() as conn:
                    tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            finally:
                await journal.close()
            await stop_all(standby)
    assert tables == []
    assert built == []


async def test_a_trader_that_lost_the_lock_cancels_none_of_the_new_traders_orders(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = SimClock(1)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": D(10_000)})
    gateway = SimGateway(engine, iter(()), clock, None, "sim")
    engine.on_quote(Quote(SOL, D(100), D("100.1"), D("100.05"), clock.now()))
    async with journal_for(settings) as journal, acquire_trader_lock(settings.database, tmp_path) as lock:
        # the new trader's order: in the shared journal, resting on the exchange
        request = OrderRequest("dk-new-trader", SOL, Side.BUY, D(1), OrderType.LIMIT, D(90))
        await journal.record_order(OrderRecord.pending(request, 1, clock.now(), D(100), "SOL"))
        engine.place_order("sim", request, clock.now())
        lock.lose("the lock's database session ended")  # while the old trader's reconciliation runs
        with pytest.raises(TraderLockLost):
            await reconcile(gateway, journal, clock, landing_secs=1.0, holds_lock=lock.held)
    assert [o.client_order_id for o in await gateway.fetch_open_orders()] == ["dk-new-trader"]
