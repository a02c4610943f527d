"""The exchange's own margin figures, through ccxt against the Bybit emulator on loopback: the liquidation
price, margins and risk limits the emulator's engine works with, read by the real ccxt client and by the
adapter; and the margin watch taking the exchange's tiers at start (or keeping its defaults, logged)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
from structlog.testing import capture_logs
from tests.integration.frozen_emulator import (
    INVERSE,
    LINEAR,
    SPOT,
    ccxt_client,
    engine_position,
    frozen_emulator,
    opened_adapter,
    sell,
    short_liquidation_price,
    wallet,
)
from tests.integration.service_harness import RecordingAlerts, journal_for

from deltakeeper.app.margin_watch import MarginWatch, margin_watch_of
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_runner, build_sim_exchange
from deltakeeper.cli.margin import margin_report
from deltakeeper.config import Settings
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.margin_tiers import DEFAULT_TIERS_USD, MarginTier
from deltakeeper.domain.policy import price_symbol
from deltakeeper.ports import Exchange
from deltakeeper.sim.gateway import SimGateway

D = Decimal
BYBIT_TIERS = (
    MarginTier(D(0), D(2_000_000), D("0.005")),
    MarginTier(D(2_000_000), D(4_000_000), D("0.01")),
    MarginTier(D(4_000_000), D(8_000_000), D("0.02")),
    MarginTier(D(8_000_000), D(16_000_000), D("0.04")),
)
"""The risk limits the emulator publishes (`/v5/market/risk-limit`), as a maintenance margin table."""

pytestmark = pytest.mark.timeout(60)


class WallClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)




async def test_bybit_positions_report_the_engines_liquidation_price_and_margins_through_ccxt() -> None:
    async with frozen_emulator() as server, ccxt_client(server) as client:
        sell(server, "linear", "SOLUSDT", "600")
        sell(server, "inverse", "SOLUSD", "1000")
        [linear] = await client.fetch_positions([LINEAR])
        [inverse] = await client.fetch_positions([INVERSE])
        held = engine_position(server, LINEAR)
        usdt = wallet(server, "USDT")

    expected = short_liquidation_price(usdt, D(600), held.entry_price, D("0.005"))
    assert held.liquidation_price is not None
    assert abs(held.liquidation_price - expected) < D("1e-8")
    assert D(linear["info"]["liqPrice"]) == held.liquidation_price
    assert D(str(linear["liquidationPrice"])) == held.liquidation_price
    initial = (600 * held.mark_price / 10).quantize(D("1e-8"))
    assert D(linear["info"]["positionIM"]) == held.initial_margin == initial
    assert D(linear["info"]["positionMM"]) == held.maintenance_margin == 600 * held.mark_price * D("0.005")
    # A short inverse contract against 1,000 SOL of coin collateral: no price liquidates it, and Bybit leaves
    # the field empty.
    assert inverse["info"]["liqPrice"] == "" and inverse["liquidationPrice"] is None
    assert engine_position(server, INVERSE).liquidation_price is None


async def test_risk_limits_through_ccxt_are_the_table_the_engine_liquidates_with() -> None:
    async with frozen_emulator() as server, ccxt_client(server) as client, opened_adapter(server) as exchange:
        raw = (await client.fetch_leverage_tiers([LINEAR]))[LINEAR]
        inverse = await client.fetch_market_leverage_tiers(INVERSE)
        tables = await exchange.fetch_leverage_tiers([LINEAR, INVERSE, SPOT])

    assert [(t["minNotional"], t["maxNotional"], t["maintenanceMarginRate"]) for t in raw] == [
        (float(t.floor_usd), float(t.cap_usd), float(t.mmr)) for t in BYBIT_TIERS]
    assert raw[1]["info"]["mmDeduction"] == "10000"  # 2M x (1% - 0.5%): MM continuous across the tiers
    assert server.venue.engine.maintenance_tiers == BYBIT_TIERS
    # The adapter's tables count USD: the inverse market's tiers count coins (200 SOL in the first), and
    # spot has none.
    assert inverse[0]["maxNotional"] == 200 and inverse[0]["currency"] == "SOL"
    assert tables == {LINEAR: BYBIT_TIERS}


async def test_the_adapter_reads_the_exchanges_margin_figures_into_positions() -> None:
    async with frozen_emulator() as server, opened_adapter(server) as exchange:
        sell(server, "linear", "SOLUSDT", "600")
        account = await exchange.fetch_account()
        held = engine_position(server, LINEAR)

    [position] = account.positions
    assert position.symbol == LINEAR and position.contracts == -600
    assert (position.liquidation_price, position.initial_margin, position.maintenance_margin) == (
        held.liquidation_price, held.initial_margin, held.maintenance_margin)
    assert position.leverage == 10


async def test_the_live_portfolio_goes_without_the_tiers_an_exchange_refuses() -> None:
    async def refuse(symbol: str) -> None:
        raise ccxt.BadRequest(f"bybit risk limits of {symbol}: not for this key")

    async with frozen_emulator() as server, opened_adapter(server) as exchange:
        sell(server, "linear", "SOLUSDT", "600")
        exchange._rest.fetch_market_leverage_tiers = refuse
        with capture_logs() as logs:
            doc = await exchange.portfolio_document(price_symbol)

    assert doc["leverage_tiers"] == {}
    assert [entry["symbols"] for entry in logs if entry["event"] == "leverage_tiers_refused"] == [[LINEAR]]
    report = margin_report(doc)
    assert any(note.startswith(f"{LINEAR}: maintenance margin from the default tier table")
               for note in report["notes"])


def settings_for(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}", http_port=0)


@asynccontextmanager
async def runner_on(settings: Settings, exchange: Exchange) -> AsyncIterator[Runner]:
    async with journal_for(settings) as journal:
        yield await build_runner(settings, exchange, journal, WallClock(), RecordingAlerts())


def watch_of(runner: Runner) -> MarginWatch:
    margin = margin_watch_of(runner.watch)
    assert margin is not None
    return margin


async def test_the_margin_watch_takes_the_exchanges_tiers_at_start(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with frozen_emulator() as server, opened_adapter(server) as exchange:
        async with runner_on(settings, exchange) as runner:
            margin = watch_of(runner)

    # The 1,000 SOL the account holds are hedged with the USDT perpetual: its table is Bybit's.
    assert margin.rules.tiers == {LINEAR: BYBIT_TIERS}
    assert margin.rules.tiers_for(LINEAR) != DEFAULT_TIERS_USD


class NoTiers:
    """The simulated exchange, except that it cannot be asked for its tiers."""

    def __init__(self, gateway: SimGateway) -> None:
        self.gateway = gateway

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def fetch_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, tuple[MarginTier, ...]]:
        raise ExchangeUnavailable("risk limits unavailable")


async def test_the_margin_watch_keeps_its_default_tiers_when_the_exchange_gives_none(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    gateway, _ = build_sim_exchange(settings)
    assert isinstance(gateway, SimGateway)
    gateway.engine.maintenance_tiers = BYBIT_TIERS
    try:
        async with runner_on(settings, gateway) as runner:
            given = watch_of(runner).rules.tiers
        with capture_logs() as logs:
            async with runner_on(settings, NoTiers(gateway)) as runner:  # type: ignore[arg-type]
                kept = watch_of(runner).rules.tiers
    finally:
        await gateway.close()

    assert given == {LINEAR: BYBIT_TIERS}
    assert kept == {}
    [fallback] = [entry for entry in logs if entry["event"] == "margin_tiers_default"]
    assert fallback["symbols"] == [LINEAR] and "risk limits unavailable" in fallback["reason"]
