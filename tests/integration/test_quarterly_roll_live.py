"""A quarterly hedge in the live loop (`DK_ASSETS__SOL__HEDGE=quarterly`), on the simulated exchange and a
real SQLite journal: opened on the nearest quarterly, rolled into the next one once inside the roll window,
through the decision cycle and the order runner, journaled as one `roll` decision with both legs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until

from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_runner
from deltakeeper.config import AssetSettings, Settings
from deltakeeper.domain.orders import OrderRequest, Quote, Side, client_order_id
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.futures import with_future_quotes
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments, future_instruments

EXPIRY = datetime(2026, 12, 25, 8, tzinfo=UTC)
WINDOW_OPENS = EXPIRY - timedelta(hours=48)
DEC, MAR = "SOL/USDT:USDT-261225", "SOL/USDT:USDT-270326"
SOL_PERP = "SOL/USDT:USDT"
HELD_SOL = D(100)


def sol_feed(start: datetime) -> Iterator[tuple[datetime, list[Quote]]]:
    """SOL's perpetual at 150 USDT every 30 seconds: the delta moves only by the bot's trades."""
    ts = start
    while True:
        yield ts, [Quote(SOL_PERP, D("149.99"), D("150.01"), D(150), ts, index=D(150))]
        ts += timedelta(seconds=30)


def quarterly_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, assets={"SOL": AssetSettings(hedge="quarterly", band_coin=D(1))})


def sim_exchange(settings: Settings, start: datetime) -> tuple[SimGateway, SimClock]:
    """100 SOL and 20,000 USDT on the simulated exchange from `start`, the quarterlies priced off spot."""
    clock = SimClock(settings.sim_speed, anchor_sim=start)
    futures = future_instruments(start)
    engine = SimEngine({**default_instruments(), **futures}, seed=1)
    engine.open_account("sim", {"SOL": HELD_SOL, "USDT": D(20_000)})
    return SimGateway(engine, with_future_quotes(sol_feed(clock.now()), futures), clock, None, "sim"), clock


def positions(runner: Runner) -> dict[str, D]:
    account = runner.service.state.account
    return {p.symbol: p.contracts for p in account.positions if p.contracts} if account else {}


async def test_a_quarterly_hedge_is_opened_then_rolled_once_inside_the_window(tmp_path: Path) -> None:
    settings = quarterly_settings(tmp_path)
    gateway, clock = sim_exchange(settings, WINDOW_OPENS - timedelta(hours=3))  # 6 s before, at 1800x
    async with journal_for(settings) as journal:
        runner = await build_runner(settings, gateway, journal, clock, RecordingAlerts())
        assert runner.service.policies["SOL"].hedge_symbol == DEC  # 51 hours left: outside the window
        assert MAR in runner.service.symbols()  # streamed from the start: the roll needs its price
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: positions(runner) == {DEC: -HELD_SOL}, 20, "the hedge on December")
            await until(lambda: positions(runner) == {MAR: -HELD_SOL}, 20, "the hedge rolled into March")
            rolled_at = clock.now()
            await until(lambda: clock.now() > rolled_at + timedelta(hours=1), 20, "an hour more")
            assert positions(runner) == {MAR: -HELD_SOL}
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await gateway.close()
        assert runner.service.policies["SOL"].hedge_symbol == MAR
        decisions = await journal.list_decisions()
        orders = await journal.list_orders()

    rolls = [d for d in decisions if d["reason"] == "roll"]
    assert len(rolls) == 1, rolls  # the re-evaluations meanwhile (every 0.3 s) did not roll again
    (roll,) = rolls
    assert (roll["symbol"], roll["side"], D(roll["amount_contracts"])) == (MAR, "sell", HELD_SOL)
    assert datetime.fromisoformat(str(roll["ts"])).replace(tzinfo=UTC) >= WINDOW_OPENS
    legs = sorted((o["symbol"], o["side"], D(o["amount_contracts"]), o["reduce_only"], o["status"])
                  for o in orders if o["decision_id"] == roll["decision_id"])
    assert legs == [(DEC, "buy", HELD_SOL, True, "filled"), (MAR, "sell", HELD_SOL, False, "filled")]
    assert {o["symbol"] for o in orders} == {DEC, MAR}
    delta = runner.service.state.deltas()["SOL"].delta_coin
    assert abs(delta) <= 1  # within the band


async def test_a_re_evaluation_while_the_legs_are_in_flight_does_not_roll_again(tmp_path: Path) -> None:
    settings = quarterly_settings(tmp_path)
    gateway, clock = sim_exchange(settings, WINDOW_OPENS + timedelta(hours=1))
    engine = gateway.engine
    ticks = with_future_quotes(sol_feed(clock.now()), future_instruments(clock.now()))
    quotes = [quote for _, (_, tick) in zip(range(3), ticks, strict=False) for quote in tick]
    for quote in quotes:
        engine.on_quote(quote)
    engine.place_order("sim", OrderRequest("hedge", DEC, Side.SELL, HELD_SOL), clock.now())  # from before
    async with journal_for(settings) as journal:
        runner = await build_runner(settings, gateway, journal, clock, RecordingAlerts())
        service = runner.service
        assert service.policies["SOL"].hedge_symbol == MAR  # 47 hours left on December: March from the start
        for quote in quotes:
            service.ingest.on_quote(quote)
        service.ingest.on_account(await gateway.fetch_account())

        first = await service.cycle.evaluate("SOL", scheduled=True)
        again = await service.cycle.evaluate("SOL", scheduled=True)  # the legs not yet sent
        assert first is not None and first.record.reason == "roll" and again is None
        await asyncio.gather(*service.orders.tasks)
        await asyncio.gather(*service.orders.tasks)  # the open leg, after the close
        decisions = await journal.list_decisions()
        orders = await journal.list_orders()
        await gateway.close()
    assert {p.symbol: p.contracts for p in engine.positions("sim")} == {MAR: -HELD_SOL}
    assert [d["reason"] for d in decisions].count("roll") == 1
    assert sorted((o["client_order_id"], o["status"]) for o in orders if o["client_order_id"] != "hedge") == [
        (client_order_id(first.record.decision_id, 0), "filled"),
        (client_order_id(first.record.decision_id, 1), "filled")]


async def test_a_hedge_with_nothing_on_it_inside_the_window_moves_to_the_next_contract(
        tmp_path: Path) -> None:
    settings = quarterly_settings(tmp_path)
    gateway, clock = sim_exchange(settings, WINDOW_OPENS - timedelta(hours=1))
    async with journal_for(settings) as journal:
        runner = await build_runner(settings, gateway, journal, clock, RecordingAlerts())
        service = runner.service
        assert service.policies["SOL"].hedge_symbol == DEC
        clock.advance_to(WINDOW_OPENS + timedelta(minutes=1))  # no hedge opened yet: nothing to roll
        ticks = with_future_quotes(sol_feed(clock.now()), future_instruments(clock.now()))
        for _, (_, tick) in zip(range(3), ticks, strict=False):
            for quote in tick:
                gateway.engine.on_quote(quote)
                service.ingest.on_quote(quote)
        service.ingest.on_account(await gateway.fetch_account())

        evaluation = await service.cycle.evaluate("SOL", scheduled=True)
        await asyncio.gather(*service.orders.tasks)
        await gateway.close()
    assert service.policies["SOL"].hedge_symbol == MAR
    assert evaluation is not None
    assert (evaluation.record.reason, evaluation.record.symbol) == ("rebalance", MAR)
    assert {p.symbol: p.contracts for p in gateway.engine.positions("sim")} == {MAR: -HELD_SOL}
