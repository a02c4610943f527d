"""The account's margin mode and the venue's own margin ratio (issue 13): through stock ccxt against the
Bybit emulator (its `/v5/account/info` marginMode as configured, its wallet's accountMMRate), and in the bot
wired as `deltakeeper run` wires it on the simulated exchange: detected and logged at start, shown beside
the estimate in `/api/status` and `/metrics`; a read that fails shows `unknown`, never `standard`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from tests.integration.frozen_emulator import KEY, SECRET, frozen_emulator, sell
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until
from tests.integration.test_metrics import samples, scrape, value

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.app.margin_watch import margin_watch_of
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_http_server, build_runner, build_sim_exchange
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.venue_margin import AccountMode, VenueMargin
from deltakeeper.sim.clock import WallClock
from deltakeeper.sim.gateway import SimGateway

pytestmark = pytest.mark.timeout(60)


async def test_the_emulator_s_account_mode_and_mm_rate_are_read_through_ccxt() -> None:
    async with frozen_emulator() as server:
        exchange = CcxtExchange("bybit", clock=WallClock(), api_key=KEY, secret=SECRET, base_url=server.url,
                                ccxt_config={"enableRateLimit": False})
        try:
            idle = await exchange.fetch_account_margin()
            sell(server, "linear", "SOLUSDT", "600")
            held = await exchange.fetch_account_margin()
            balance = await exchange._rest.fetch_balance({"type": "unified"})  # ccxt's own read of the wallet
            server.venue.margin_mode = "PORTFOLIO_MARGIN"
            portfolio = await exchange.fetch_account_margin()
        finally:
            await exchange.close()

    assert idle.mode is AccountMode.UNIFIED and idle.maintenance_ratio == 0
    assert "unifiedMarginStatus=5, marginMode=REGULAR_MARGIN" in idle.detail
    assert held.maintenance_ratio is not None and held.maintenance_ratio > 0
    assert held.maintenance_ratio == Decimal(balance["info"]["result"]["list"][0]["accountMMRate"])
    assert held.ratio_source == "accountMMRate"
    assert portfolio.mode is AccountMode.PORTFOLIO and "marginMode=PORTFOLIO_MARGIN" in portfolio.detail


class MarginUnreadable:
    """The simulated exchange, except that its account margin read raises `error`."""

    def __init__(self, gateway: SimGateway, error: Exception) -> None:
        self.gateway = gateway
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def fetch_account_margin(self) -> VenueMargin:
        raise self.error


@asynccontextmanager
async def running_bot(tmp_path: Path, unreadable: Exception | None
                      ) -> AsyncIterator[tuple[Runner, list[dict[str, Any]], int]]:
    """The bot wired as `deltakeeper run` wires it, running until an order settled; its start's log
    events and its HTTP port."""
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal:
        sim, clock = build_sim_exchange(settings)
        assert isinstance(sim, SimGateway)
        exchange: Any = MarginUnreadable(sim, unreadable) if unreadable else sim
        with capture_logs() as logs:
            runner = await build_runner(settings, exchange, journal, clock, RecordingAlerts())
        server = build_http_server(settings, runner, journal)
        port = await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: sum(runner.service.counters.orders.values()) > 0, 30, "an order settled")
            yield runner, logs, port
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await server.stop()
            await sim.close()


async def api_status(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/status") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_the_bot_detects_the_mode_at_start_and_shows_the_venue_ratio_beside_its_estimate(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, unreadable=None) as (runner, logs, port):
        margin = margin_watch_of(runner.watch)
        assert margin is not None and margin.venue is not None
        await until(lambda: bool(runner.service.state.account and runner.service.state.account.positions), 30,
                    "a hedge position")
        await margin.venue.refresh()
        status = await api_status(port)
        found = samples(await scrape(port))

    [started] = [e for e in logs if e["event"] == "account_margin_mode"]
    assert started["mode"] == "standard" and "simulated exchange" in started["detail"]
    venue = status["margin"]["venue"]
    assert venue["mode"] == "standard"
    assert venue["ratio_source"] == "maintenance margin/margin balance USDT"  # the hedge is a USDT perp
    assert 0 < venue["maintenance_ratio"] < 1
    # The simulated exchange margins as the estimate does (standard cross margin per settlement currency):
    # the two agree but for the price moves between the bot's last account snapshot and the engine's read.
    assert venue["estimate_maintenance_ratio"] == pytest.approx(venue["maintenance_ratio"], abs=1e-3)
    assert value(found, "deltakeeper_account_margin_mode", mode="standard") == 1
    assert value(found, "deltakeeper_account_margin_mode", mode="unknown") == 0
    assert round(value(found, "deltakeeper_venue_maintenance_margin_ratio"), 4) == venue["maintenance_ratio"]


@pytest.mark.parametrize("error", [ExchangeUnavailable("503 Service Unavailable"),
                                   RuntimeError("fetchAccountMargin() is not supported")])
async def test_an_account_margin_read_that_fails_is_unknown_and_the_bot_runs_on(
        tmp_path: Path, error: Exception) -> None:
    async with running_bot(tmp_path, unreadable=error) as (_, logs, port):
        status = await api_status(port)
        found = samples(await scrape(port))

    [started] = [e for e in logs if e["event"] == "account_margin_mode_unknown"]
    assert started["detail"] == f"{type(error).__name__}: {error}"
    assert not [e for e in logs if e["event"] == "account_margin_mode"]
    venue = status["margin"]["venue"]
    assert venue["mode"] == "unknown" and venue["maintenance_ratio"] is None
    assert value(found, "deltakeeper_account_margin_mode", mode="unknown") == 1
    assert value(found, "deltakeeper_account_margin_mode", mode="standard") == 0
    assert "deltakeeper_venue_maintenance_margin_ratio" not in found
