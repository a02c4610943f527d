"""An options book in the live loop on the simulated exchange (issue 6): short coin-settled BTC calls,
priced by Black-76 at a fixed volatility on a synthetic path, hedged with the BTC perpetual (linear or
inverse). Gamma moves the delta as the price moves; after every hedge the delta is back inside the band."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from tests.integration.service_harness import until

from deltakeeper.adapters.journal import create_journal, upgrade
from deltakeeper.bootstrap import build_runner
from deltakeeper.config import AssetSettings, Settings
from deltakeeper.domain.exposure import asset_deltas
from deltakeeper.domain.orders import OrderRequest, Side
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import synthetic_feed, with_option_quotes
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import ASSETS, default_instruments, option_instruments

D = Decimal
ACCOUNT = "sim"
BAND = D("0.1")
CALLS = D(10)


@pytest.mark.parametrize("hedge", ["BTC/USDT:USDT", "BTC/USD:BTC"])
async def test_short_calls_hedged_with_a_perpetual_stay_within_the_band_after_every_hedge(
    tmp_path: Path, hedge: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'journal.db'}",
        sim_speed=600,  # gamma moves the delta across the band every few wall seconds
        recompute_secs=0.3,
        assets={"BTC": AssetSettings(hedge=hedge, band_coin=BAND)},
        policy="band",  # the fixed coin band, to the target
        rebalance_to="target",
        http_port=0,
    )
    clock = SimClock(settings.sim_speed)
    options = option_instruments("BTC", start=clock.now(), price=60_000.0, expiry_days=(30,))
    call = next(i for i in options.values() if i.is_call and i.strike == 60_000)
    engine = SimEngine({**default_instruments(), **options}, seed=11)
    engine.open_account(ACCOUNT, {"BTC": D(3), "USDT": D(500_000)})
    feed = with_option_quotes(
        synthetic_feed(
            ASSETS["BTC"], start=clock.now(), price=60_000.0, vol_annual=0.8, tick_secs=30, seed=4
        ),
        options,
        vol=0.60,
    )
    exchange = SimGateway(engine, feed, clock, None, ACCOUNT)
    exchange.start()
    await until(lambda: engine.quote(call.symbol) is not None, 5, "option quotes")
    await exchange.place_order(OrderRequest("book1", call.symbol, Side.SELL, CALLS))  # the options book

    await asyncio.to_thread(upgrade, settings.database)
    journal = create_journal(settings.database)
    runner = await build_runner(settings, exchange, journal, clock, _NoAlerts())
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await until(
            lambda: sum(1 for o in engine.orders(ACCOUNT) if (o.client_order_id or "").startswith("dk")) >= 4,
            90,
            "four hedges",
        )
        await until(lambda: not runner.service.orders.in_flight, 10, "the last hedge to settle")
        decisions = await journal.list_decisions(asset="BTC")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await exchange.close()
        await settle_leftover_jobs()
        await journal.close()

    # The book is still short the calls; the hedge is long (short calls are short delta).
    held = {p.symbol: p for p in engine.positions(ACCOUNT)}
    assert held[call.symbol].contracts == -CALLS
    assert held[call.symbol].delta is not None and held[call.symbol].mark_iv == 0.60
    # After every hedge, the next decision found the delta inside the band.
    rebalances = [i for i, d in enumerate(decisions) if d["reason"] == "rebalance"]
    assert len(rebalances) >= 4, [d["reason"] for d in decisions]
    for index in rebalances:
        if index + 1 < len(decisions):
            after = decisions[index + 1]
            assert abs(after["delta_coin"] - after["target_coin"]) <= BAND, (decisions[index], after)
    # The delta the bot saw counts the calls at their price-adjusted delta (REFERENCE 1.3).
    price = engine.quote(hedge).mark  # type: ignore[union-attr]
    book = asset_deltas(engine.instruments, engine.balances(ACCOUNT), list(held.values()), {"BTC": price})[
        "BTC"
    ]
    calls = held[call.symbol]
    adjusted = calls.contracts * ((calls.delta or D(0)) - calls.mark_price)
    assert adjusted < D(-3)  # ten ~0.5-delta calls, less their premium
    assert abs(book.delta_coin) <= 2 * BAND


async def settle_leftover_jobs() -> None:
    """Let a scheduled job still running after the Runner stopped finish before the journal closes."""
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if leftover:
        await asyncio.wait(leftover, timeout=5)


class _NoAlerts:
    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        return None
