"""Margin in the live loop on the real simulated exchange and a real SQLite journal: liquidation fills
journaled, alerted and hedged back within the margin the pre-trade check allows; headroom in status and
metrics; a coin-margined account that must not trade as the price moves (USD-neutral), and trades to
coin-neutral when told to."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from tests.integration.service_harness import RecordingAlerts, journal_for, until

from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_http_server, build_runner
from deltakeeper.config import AssetSettings, Settings
from deltakeeper.domain.orders import OrderRequest, Quote, Side
from deltakeeper.domain.risk import TradingState
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import ASSETS, SimAsset, default_instruments

D = Decimal
ACCOUNT = "sim"


class Lever:
    """A feed whose price the test sets (or lets drift by `drift_per_tick`): a quote for each of the
    asset's markets every `tick_secs` of simulated time, 1 bp either side of the price."""

    def __init__(
        self, asset: SimAsset, price: float, tick_secs: int = 30, drift_per_tick: float = 0.0
    ) -> None:
        self.asset = asset
        self.price = price
        self.tick_secs = tick_secs
        self.drift_per_tick = drift_per_tick
        self.quoted: list[float] = []

    def feed(self, start: datetime) -> Iterator[tuple[datetime, list[Quote]]]:
        ts = start
        tick = self.asset.price_tick
        while True:
            self.quoted.append(self.price)
            level = D(repr(self.price))
            bid = (level * D("0.9999") / tick).to_integral_value("ROUND_FLOOR") * tick
            ask = (level * D("1.0001") / tick).to_integral_value("ROUND_CEILING") * tick
            index = level.quantize(tick)
            yield (
                ts,
                [
                    Quote(i.symbol, bid, ask, (bid + ask) / 2, ts, index=index)
                    for i in self.asset.instruments()
                ],
            )
            ts += timedelta(seconds=self.tick_secs)
            self.price *= math.exp(self.drift_per_tick)


def settings_for(tmp_path: Path, **assets: AssetSettings) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'journal.db'}",
        sim_speed=600,
        recompute_secs=0.3,
        assets=assets,
        policy="band",  # the asset's fixed coin band, to the target
        rebalance_to="target",
        http_port=0,
    )


def sim_exchange(
    settings: Settings, lever: Lever, balances: dict[str, Decimal]
) -> tuple[SimGateway, SimClock]:
    clock = SimClock(settings.sim_speed)
    engine = SimEngine(default_instruments(), seed=5)
    engine.open_account(ACCOUNT, balances)
    return SimGateway(engine, lever.feed(clock.now()), clock, None, ACCOUNT), clock


@asynccontextmanager
async def running(
    settings: Settings, journal: SqlJournal, exchange: SimGateway, clock: SimClock
) -> AsyncIterator[tuple[Runner, RecordingAlerts]]:
    alerts = RecordingAlerts()
    runner = await build_runner(settings, exchange, journal, clock, alerts)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, alerts
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await exchange.close()
        await settle_leftover_jobs()


async def settle_leftover_jobs() -> None:
    """Let a scheduled job still running after the Runner stopped (its scheduler shuts down without
    waiting) finish before the journal closes under it."""
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if leftover:
        await asyncio.wait(leftover, timeout=5)


def position(exchange: SimGateway, symbol: str) -> Decimal:
    return next((p.contracts for p in exchange.engine.positions(ACCOUNT) if p.symbol == symbol), D(0))


def bot_orders(exchange: SimGateway) -> list[Any]:
    return [o for o in exchange.engine.orders(ACCOUNT) if (o.client_order_id or "").startswith("dk")]


async def test_a_liquidation_while_the_bot_was_down_is_found_by_reconciliation_journaled_and_alerted(
    tmp_path: Path,
) -> None:
    """The exchange liquidates the short hedge before the bot starts: no stream tells it, reconciliation's
    backfill does, and the fill is handled as the stream's would be."""
    hedge = "SOL/USDT:USDT"
    settings = settings_for(tmp_path, SOL=AssetSettings(hedge=hedge, band_coin=D(2)))
    lever = Lever(ASSETS["SOL"], 100.0)
    exchange, clock = sim_exchange(settings, lever, {"SOL": D(100), "USDT": D(2000)})
    engine = exchange.engine
    now = clock.now()
    _, quotes = next(lever.feed(now))
    for quote in quotes:
        engine.on_quote(quote)
    engine.place_order(ACCOUNT, OrderRequest("manual-short", hedge, Side.SELL, D(100)), now)
    (leg,) = engine.positions(ACCOUNT)
    assert leg.liquidation_price is not None
    lever.price = float(leg.liquidation_price) * 1.005
    _, quotes = next(lever.feed(now + timedelta(seconds=30)))
    for quote in quotes:
        engine.on_quote(quote)
    assert position(exchange, hedge) == 0
    (closed,) = [f for f in engine.fills(ACCOUNT) if f.liquidation]

    async with (
        journal_for(settings) as journal,
        running(settings, journal, exchange, clock) as (runner, alerts),
    ):
        await until(lambda: "liquidation_fill" in alerts.events(), 10, "the liquidation alert")
        assert runner.reconciled
        decisions = await journal.list_decisions()
        (record,) = [d for d in decisions if d["reason"] == "liquidation"]
        assert closed.trade_id in record["detail"] and record["amount_contracts"] == 100
        assert [f["trade_id"] for f in await journal.list_fills()].count(closed.trade_id) == 1
    level, _, message = next(a for a in alerts.sent if a[1] == "liquidation_fill")
    assert level == "error" and closed.trade_id in message


async def test_a_liquidation_is_journaled_alerted_and_hedged_back_within_the_margin_left(
    tmp_path: Path,
) -> None:
    hedge = "SOL/USDT:USDT"
    settings = settings_for(tmp_path, SOL=AssetSettings(hedge=hedge, band_coin=D(2)))
    lever = Lever(ASSETS["SOL"], 100.0)
    exchange, clock = sim_exchange(settings, lever, {"SOL": D(100), "USDT": D(2000)})
    async with (
        journal_for(settings) as journal,
        running(settings, journal, exchange, clock) as (runner, alerts),
    ):
        await until(lambda: position(exchange, hedge) == -100, 20, "the short hedge")
        await until(
            lambda: runner.service.state.account is not None and bool(runner.service.state.account.positions),
            10,
            "the bot to see the hedge",
        )
        (leg,) = exchange.engine.positions(ACCOUNT)
        assert leg.liquidation_price is not None and 119 < leg.liquidation_price < 120

        # Headroom is a metric and part of the status.
        server = build_http_server(settings, runner, journal)
        port = await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/api/status") as answer:
                    status = await answer.json()
                async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
                    metrics = await answer.text()
        finally:
            await server.stop()
        margin = status["margin"]
        assert 0.9 < margin["headroom"] < 1 and margin["critical_headroom"] == 0.15
        (usdt_leg,) = margin["by_settle"]["USDT"]["positions"]
        assert usdt_leg["symbol"] == hedge and usdt_leg["source"] == "exchange"
        assert 0.18 < usdt_leg["liquidation_move"] < 0.2
        assert 'deltakeeper_margin_headroom{settle="USDT"} 0.9' in metrics

        # A jump past the liquidation price: the exchange closes the short at its mark.
        jumped_at = runner.service.clock.now()
        lever.price = 119.6
        await until(lambda: "liquidation_fill" in alerts.events(), 10, "the liquidation alert")
        fills = await journal.list_fills(since=jumped_at - timedelta(minutes=1))
        liquidation = [f for f in fills if f["client_order_id"] is None]
        assert [(f["side"], f["amount_contracts"]) for f in liquidation] == [("buy", D(100))]
        trade_id = liquidation[0]["trade_id"]
        level, _, message = next(a for a in alerts.sent if a[1] == "liquidation_fill")
        assert level == "error" and trade_id in message

        # The next decision hedges back, as far as the margin left allows (the pre-trade check).
        await until(lambda: len(bot_orders(exchange)) >= 2, 10, "the hedge back")
        await until(lambda: not runner.service.orders.in_flight, 10, "the hedge back to settle")
        decisions = await journal.list_decisions(since=jumped_at - timedelta(minutes=1))
        reasons = [d["reason"] for d in decisions]
        assert "liquidation" in reasons
        record = decisions[reasons.index("liquidation")]
        assert (
            trade_id in record["detail"] and record["symbol"] == hedge and record["amount_contracts"] == 100
        )
        back = next(d for d in decisions[reasons.index("liquidation") :] if d["reason"] == "rebalance")
        assert back["side"] == "sell" and 0 < back["amount_contracts"] < 100
        assert "initial_margin" in back["detail"] or "margin_headroom" in back["detail"]
        partial = position(exchange, hedge)
        assert -100 < partial < 0

        # With collateral topped up, the bot hedges the rest.
        exchange.engine.adjust_balance(ACCOUNT, "USDT", D(5000), runner.service.clock.now())
        await until(lambda: position(exchange, hedge) <= -98, 10, "the full hedge back")


async def test_a_coin_margined_short_against_its_own_collateral_is_not_traded_as_the_price_moves(
    tmp_path: Path,
) -> None:
    hedge = "BTC/USD:BTC"
    settings = settings_for(tmp_path, BTC=AssetSettings(hedge=hedge, band_coin=D("0.01")))
    lever = Lever(ASSETS["BTC"], 60_000.0, drift_per_tick=0.0005)  # +1.5% every simulated hour
    exchange, clock = sim_exchange(settings, lever, {"BTC": D(1)})
    exchange.start()
    await until(lambda: exchange.engine.quote(hedge) is not None, 5, "a first quote")
    face = D(round(lever.price))
    await exchange.place_order(OrderRequest("manual1", hedge, Side.SELL, face))

    async with journal_for(settings) as journal, running(settings, journal, exchange, clock):
        first = lever.price
        await until(lambda: lever.price > first * 1.10, 30, "a 10% rally")
        decided = await journal.list_decisions()

    assert bot_orders(exchange) == []
    assert position(exchange, hedge) == -face
    assert decided and {d["reason"] for d in decided} == {"inside_band"}
    assert all(abs(d["delta_coin"]) < D("0.002") for d in decided)
    assert max(d["price_usd"] for d in decided) > D(first) * D("1.09")


async def test_a_coin_neutral_asset_buys_back_a_short_inverse_hedge_its_coin_collateral_backs(
    tmp_path: Path,
) -> None:
    hedge = "BTC/USD:BTC"
    settings = settings_for(tmp_path, BTC=AssetSettings(hedge=hedge, band_coin=D("0.01"), neutral="coin"))
    lever = Lever(ASSETS["BTC"], 60_000.0)
    exchange, clock = sim_exchange(settings, lever, {"BTC": D(1)})
    exchange.start()
    await until(lambda: exchange.engine.quote(hedge) is not None, 5, "a first quote")
    await exchange.place_order(OrderRequest("manual1", hedge, Side.SELL, D(30_000)))

    async with journal_for(settings) as journal, running(settings, journal, exchange, clock) as (runner, _):
        await until(
            lambda: len(bot_orders(exchange)) >= 1 and not runner.service.orders.in_flight, 20, "the buy-back"
        )
        await until(
            lambda: runner.service.decisions.last["BTC"].reason == "inside_band", 10, "a decision after"
        )
        decided = await journal.list_decisions()

    (order,) = bot_orders(exchange)
    assert order.side is Side.BUY and abs(order.amount_contracts - 30_000) <= 600
    first = decided[0]
    assert first["reason"] == "rebalance" and first["delta_coin"] < D("-0.49")
    assert abs(runner.service.decisions.last["BTC"].delta_coin) <= D("0.01")


async def test_headroom_below_the_warning_alerts_below_the_critical_level_turns_reduce_only_then_recovers(
    tmp_path: Path,
) -> None:
    hedge = "SOL/USDT:USDT"
    settings = settings_for(tmp_path, SOL=AssetSettings(hedge=hedge, band_coin=D(2)))
    lever = Lever(ASSETS["SOL"], 100.0)
    exchange, clock = sim_exchange(settings, lever, {"SOL": D(100), "USDT": D(2000)})
    async with (
        journal_for(settings) as journal,
        running(settings, journal, exchange, clock) as (runner, alerts),
    ):
        service = runner.service
        await until(lambda: position(exchange, hedge) == -100, 20, "the short hedge")
        (leg,) = exchange.engine.positions(ACCOUNT)
        assert leg.liquidation_price is not None
        liquidation = float(leg.liquidation_price)

        # 20 cents short of the liquidation price: (equity - MM) / equity is about 30%, below the warning.
        lever.price = liquidation - 0.2
        await until(lambda: "margin_headroom_low" in alerts.events(), 10, "the headroom warning")
        assert service.trading.state is TradingState.ACTIVE
        level, _, message = next(a for a in alerts.sent if a[1] == "margin_headroom_low")
        assert level == "error" and "below 35%" in message

        # 5 cents short: about 10%, below the critical level: reduce_only, journaled and alerted.
        low_from = service.clock.now()
        lever.price = liquidation - 0.05
        await until(lambda: service.trading.state is TradingState.REDUCE_ONLY, 10, "reduce_only")
        assert service.trading.cause == "margin_low"
        assert any(
            "-> reduce_only (margin_low)" in m for _, e, m in alerts.sent if e == "trading_state_changed"
        )
        await until(lambda: service.decisions.last["SOL"].trading_state == "reduce_only", 10, "a decision")
        decisions = await journal.list_decisions(since=low_from)
        low = next(d for d in decisions if d["reason"] == "margin_low")
        assert low["trading_state"] == "reduce_only" and "USDT" in low["detail"]
        assert position(exchange, hedge) == -100  # not liquidated

        # The price falls back: the breach clears and, after DK_STATE_CLEAR_SECS, trading is active again.
        lever.price = 100.0
        await until(lambda: service.trading.state is TradingState.ACTIVE, 10, "active again")
        assert any(
            m.endswith("-> active (cleared)") for _, e, m in alerts.sent if e == "trading_state_changed"
        )
