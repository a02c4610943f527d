"""`DK_ASSETS__SOL__HEDGE=carry` in the live loop, on the simulated exchange and a real SQLite journal: the
hedge is opened on the perpetual while its funding beats the quarterly's basis, on the quarterly otherwise,
and the decision says why."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until
from tests.integration.test_quarterly_roll_live import DEC, HELD_SOL, SOL_PERP, positions

from deltakeeper.bootstrap import build_runner
from deltakeeper.config import AssetSettings
from deltakeeper.domain.orders import Quote
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.futures import with_future_quotes
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments, future_instruments

START = datetime(2026, 11, 1, 8, tzinfo=UTC)  # 54 days before the December expiry


def sol_feed(start: datetime, funding_per_8h: D) -> Iterator[tuple[datetime, list[Quote]]]:
    ts = start
    while True:
        yield ts, [Quote(SOL_PERP, D("149.99"), D("150.01"), D(150), ts, index=D(150),
                         funding_rate=funding_per_8h)]
        ts += timedelta(seconds=30)


@pytest.mark.parametrize(("funding_per_8h", "hedge"), [(D("0.001"), SOL_PERP), (D("-0.001"), DEC)])
async def test_a_carry_hedge_is_opened_on_the_market_with_the_better_carry(
        tmp_path: Path, funding_per_8h: D, hedge: str) -> None:
    settings = make_settings(tmp_path, assets={"SOL": AssetSettings(hedge="carry", band_coin=D(1))})
    clock = SimClock(settings.sim_speed, anchor_sim=START)
    futures = future_instruments(START)
    engine = SimEngine({**default_instruments(), **futures}, seed=1)
    engine.open_account("sim", {"SOL": HELD_SOL, "USDT": D(20_000)})
    gateway = SimGateway(engine, with_future_quotes(sol_feed(clock.now(), funding_per_8h), futures), clock,
                         None, "sim")
    async with journal_for(settings) as journal:
        runner = await build_runner(settings, gateway, journal, clock, RecordingAlerts())
        assert {SOL_PERP, DEC} <= set(runner.service.symbols())
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: positions(runner) == {hedge: -HELD_SOL}, 20, f"the hedge on {hedge}")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await gateway.close()
        assert runner.service.policies["SOL"].hedge_symbol == hedge
        opened = [d for d in await journal.list_decisions() if d["symbol"] == hedge and d["amount_contracts"]]
        assert opened and f"carry: {hedge}" in opened[0]["detail"]
