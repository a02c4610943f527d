"""The operator's control through the journal (halt, resume, cancel-all) and through the HTTP API, on the
real simulated exchange (bootstrap.build_sim_exchange, fast) and a real SQLite journal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until

from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app import control
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_http_server, build_runner, build_sim_exchange
from deltakeeper.config import Settings
from deltakeeper.domain.orders import OrderRequest, OrderType, Side
from deltakeeper.domain.risk import TradingState
from deltakeeper.sim.gateway import SimGateway

HEDGE = "SOL/USDT:USDT"


@asynccontextmanager
async def running(
    settings: Settings, journal: SqlJournal
) -> AsyncIterator[tuple[Runner, SimGateway, RecordingAlerts]]:
    """A Runner wired as `deltakeeper run` wires it, on a fresh simulated exchange."""
    exchange, clock = build_sim_exchange(settings)
    assert isinstance(exchange, SimGateway)
    alerts = RecordingAlerts()
    runner = await build_runner(settings, exchange, journal, clock, alerts)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, exchange, alerts
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await exchange.close()


def sent_orders(exchange: SimGateway) -> list[str]:
    """Client ids of every order the exchange accepted from the bot."""
    return [o.client_order_id or "" for o in exchange.engine.orders(exchange.account_id)]


async def rest_far_from_the_market(exchange: SimGateway, client_id: str) -> None:
    await exchange.place_order(
        OrderRequest(client_id, HEDGE, Side.BUY, Decimal(10), OrderType.LIMIT, price=Decimal(1))
    )
    assert client_id in {o.client_order_id for o in await exchange.fetch_open_orders()}


async def test_halt_through_the_journal_stops_orders_cancels_open_ones_and_resume_trades_again(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, exchange, alerts):
        await until(lambda: len(sent_orders(exchange)) >= 1, 20, "the bot's first hedge")
        await rest_far_from_the_market(exchange, "manual1")

        await control.halt(journal, "test halt", "pytest")  # what `deltakeeper halt` does, another process
        await until(lambda: runner.service.trading.state is TradingState.HALTED, 5, "the halt to apply")
        await until(lambda: not runner.service.orders.in_flight, 5, "in-flight orders to settle")
        assert await exchange.fetch_open_orders() == []
        assert runner.service.trading.cause == "test halt"
        assert "halted" in alerts.events()
        sent_at_halt = sent_orders(exchange)
        halted_from = runner.service.clock.now()

        # The delta keeps moving out of the band: the bot decides, but sends nothing.
        await asyncio.sleep(2.5)
        assert sent_orders(exchange) == sent_at_halt
        later = await journal.list_decisions(since=halted_from)
        assert later and {d["trading_state"] for d in later} == {"halted"}
        assert "halted" in {d["reason"] for d in later}
        for order in await journal.list_orders(since=halted_from):
            assert order["status"] == "canceled" and order["reject_reason"] == "halted before it was sent"

        await control.resume(journal, "done testing", "pytest")
        await until(lambda: runner.service.trading.state is TradingState.ACTIVE, 5, "the resume to apply")
        assert "resumed" in alerts.events()
        await until(lambda: len(sent_orders(exchange)) > len(sent_at_halt), 20, "a hedge after the resume")

    events = await journal.list_control_events()
    assert [(e["action"], e["by"], e["reason"]) for e in events] == [
        ("halt", "pytest", "test halt"),
        ("resume", "pytest", "done testing"),
    ]


async def test_a_halt_survives_a_restart_on_the_same_database_until_resumed(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal:
        async with running(settings, journal) as (runner, _exchange, _alerts):
            await until(lambda: runner.last_beat is not None, 10, "the first run to start")
            await control.halt(journal, "maintenance", "ops")
            await until(lambda: runner.service.trading.state is TradingState.HALTED, 5, "the halt to apply")

        async with running(settings, journal) as (runner, exchange, alerts):
            # Halted from the start, before any quote could trigger a decision.
            await until(lambda: runner.control is not None and runner.control.halted, 10, "the restart")
            assert runner.service.trading.state is TradingState.HALTED
            assert "halted" in alerts.events()
            await until(lambda: len(runner.service.decisions.last) > 0, 10, "decisions while halted")
            await asyncio.sleep(2.5)
            assert sent_orders(exchange) == []

            await control.resume(journal, "", "ops")
            await until(lambda: len(sent_orders(exchange)) >= 1, 20, "a hedge after the resume")
            assert runner.service.trading.state is TradingState.ACTIVE


async def test_cancel_all_through_the_journal_cancels_every_open_order_and_keeps_trading(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, exchange, alerts):
        await until(lambda: runner.control is not None and runner.last_beat is not None, 10, "the start")
        await rest_far_from_the_market(exchange, "manual2")

        await control.request_cancel_all(journal.record_control_event, "clean the book", "pytest")
        await until(lambda: "canceled_all" in alerts.events(), 5, "the cancel-all to apply")
        assert await exchange.fetch_open_orders() == []
        assert runner.service.trading.state is TradingState.ACTIVE
        trading_before = len(sent_orders(exchange))
        await until(lambda: len(sent_orders(exchange)) > trading_before, 20, "a hedge after the cancel-all")

    events = await journal.list_control_events()
    assert [(e["action"], e["by"], e["reason"]) for e in events] == [
        ("cancel-all", "pytest", "clean the book")
    ]


async def test_control_endpoints_halt_and_resume_at_once_and_status_and_metrics_show_it(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, http_allow_unauthenticated_control=True)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, exchange, _alerts):
        await until(lambda: bool(runner.service.decisions.last), 10, "the first decisions")
        server = build_http_server(settings, runner, journal)
        port = await server.start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                await rest_far_from_the_market(exchange, "manual3")
                result = await post(http, f"{base}/api/halt", {"reason": "from http", "by": "curl"})
                # Applied before the answer: no wait for the next recompute.
                assert result["halted"] is True and result["trading_state"] == "halted"
                assert runner.service.trading.state is TradingState.HALTED
                assert await exchange.fetch_open_orders() == []
                assert (await journal.control_state()).by == "curl"

                async with http.get(f"{base}/api/status") as response:
                    status = await response.json()
                assert status["trading"] == {"state": "halted", "cause": "from http"}
                assert status["control"]["halted"] is True and status["reconciled"] is True
                sol = status["assets"]["SOL"]
                assert sol["hedge_symbol"] == HEDGE and sol["band_coin"] == "1"
                assert sol["last_decision"]["reason"]
                assert status["streams"][HEDGE]["age_secs"] < 5

                async with http.get(f"{base}/metrics") as response:
                    metrics = await response.text()
                assert 'deltakeeper_delta_coin{asset="SOL"}' in metrics
                assert 'deltakeeper_trading_state{state="halted"} 1' in metrics

                async with http.get(f"{base}/readyz") as response:
                    ready = await response.json()
                assert ready["checks"]["reconciled"]["ok"] and ready["checks"]["database"]["ok"]

                async with http.get(f"{base}/api/journal/decisions?asset=SOL&limit=2") as response:
                    assert response.status == 200
                    assert len(await response.json()) == 2
                async with http.get(f"{base}/api/journal/orders?bogus=1") as response:
                    assert response.status == 400

                result = await post(http, f"{base}/api/resume", {"by": "curl"})
                assert result["halted"] is False and result["trading_state"] == "active"
                result = await post(http, f"{base}/api/cancel-all", {"by": "curl"})
                assert result["canceled_all"] is True
        finally:
            await server.stop()
    actions = [e["action"] for e in await journal.list_control_events()]
    assert actions == ["halt", "resume", "cancel-all"]


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, str]) -> dict[str, Any]:
    async with http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result
