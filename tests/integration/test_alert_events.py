"""The alert events the running bot raises (issue 5), on the real simulated exchange
(bootstrap.build_sim_exchange at high speed), a real SQLite journal and a recording Alerts port; the daily
summary also through real apprise to a local HTTP receiver.

`Tap` puts a switchboard between the bot and the real gateway, as a network would: it can drop the quote
stream (a dead websocket while the exchange goes on), rewrite the funding rate quotes carry, and lose the
answer to an order after the exchange took it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.alert_receiver import alert_receiver
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until

from deltakeeper.adapters.alerts import AppriseAlerts
from deltakeeper.adapters.journal.models import fills as fills_table
from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app import control
from deltakeeper.app.runner import Runner
from deltakeeper.app.watch import Watch
from deltakeeper.bootstrap import build_runner, build_sim_exchange
from deltakeeper.config import AssetSettings, Settings
from deltakeeper.domain.errors import OrderOutcomeUnknown
from deltakeeper.domain.margin_headroom import HeadroomLevels
from deltakeeper.domain.orders import OrderRequest, OrderState, Quote
from deltakeeper.domain.risk import TradingState
from deltakeeper.ports import Alerts
from deltakeeper.sim.gateway import SimGateway

HEDGE = "SOL/USDT:USDT"


class Tap:
    """The real SimGateway behind a switchboard (see the module's doc)."""

    def __init__(self, gateway: SimGateway) -> None:
        self.gateway = gateway
        self.name = gateway.name
        self.drop_quotes = False
        self.drop_symbols: set[str] = set()
        self.funding_rate: Decimal | None = None
        self.lose_answers = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        async for quote in self.gateway.quotes(symbols):
            if self.drop_quotes or quote.symbol in self.drop_symbols:
                continue
            if self.funding_rate is not None and quote.symbol == HEDGE:
                quote = replace(quote, funding_rate=self.funding_rate)
            yield quote

    async def place_order(self, request: OrderRequest) -> OrderState:
        state = await self.gateway.place_order(request)
        if self.lose_answers:
            self.lose_answers -= 1
            raise OrderOutcomeUnknown("connection reset after the request was sent")
        return state


@asynccontextmanager
async def running(
    settings: Settings, journal: SqlJournal, alerts: Alerts | None = None
) -> AsyncIterator[tuple[Runner, Tap, RecordingAlerts]]:
    """A Runner wired as `deltakeeper run` wires it, on a fresh simulated exchange behind a Tap."""
    gateway, clock = build_sim_exchange(settings)
    assert isinstance(gateway, SimGateway)
    tap = Tap(gateway)
    recording = RecordingAlerts()
    runner = await build_runner(settings, tap, journal, clock, alerts or recording)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, tap, recording
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await gateway.close()


def decided(runner: Runner) -> Callable[[], bool]:
    return lambda: "SOL" in runner.service.decisions.last


async def test_started_rebalance_completed_at_info_and_stopped_are_alerted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal:
        async with running(settings, journal) as (_runner, _tap, alerts):
            await until(lambda: "rebalance_completed" in alerts.events(), 20, "a completed rebalance")
        orders = await journal.list_orders()

    assert alerts.events()[0] == "started" and alerts.events()[-1] == "stopped"
    level, message = alerts.of("rebalance_completed")[0]
    assert level == "info"
    # e.g. "SOL: sold 3.2 SOL/USDT:USDT at 135.41; delta 4.1 -> 0.9 SOL (target 0 ± 1)"
    assert message.startswith("SOL: ") and HEDGE in message and "delta" in message and "± 1" in message
    assert ("bought" in message) or ("sold" in message)
    assert orders and orders[0]["status"] == "filled"


async def test_an_order_the_exchange_refuses_alerts_order_rejected_at_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal:
        async with running(settings, journal) as (_runner, tap, alerts):
            tap.engine.faults.reject_insufficient_balance = True
            await until(lambda: "order_rejected" in alerts.events(), 20, "a rejected order")
            await asyncio.sleep(2)
        orders = await journal.list_orders()

    level, message = alerts.of("order_rejected")[0]
    assert level == "error" and "insufficient balance" in message
    assert "rebalance_completed" not in alerts.events()
    assert {o["status"] for o in orders} == {"rejected"}
    # Refused orders are not resent in a loop: the instrument backs off 1 s, 2 s, 4 s..., so the 2 s after
    # the first refusal hold at most two more (each recompute, every 0.3 s, would send one otherwise).
    assert len(orders) <= 3
    assert alerts.events().count("order_rejected") == len(orders)


async def test_an_order_whose_answer_is_lost_alerts_unknown_outcome_and_is_settled_by_client_id(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal:
        async with running(settings, journal) as (runner, tap, alerts):
            await until(decided(runner), 10, "the first decision")
            tap.lose_answers = 1
            await until(lambda: "order_outcome_unknown" in alerts.events(), 20, "an unknown outcome")
            level, message = alerts.of("order_outcome_unknown")[0]
            client_id = message.split()[1].rstrip(":")
            in_flight = runner.service.orders.in_flight
            await until(lambda: client_id not in in_flight.values(), 10, "the order to settle")
        journaled = {o["client_order_id"]: o for o in await journal.list_orders()}

    assert level == "warning" and "settling by client id" in message
    assert journaled[client_id]["status"] == "filled"
    sent = [o.client_order_id for o in tap.engine.orders(tap.account_id)]
    assert sent.count(client_id) == 1  # never sent again


async def test_a_risk_limit_that_changes_the_trading_state_is_alerted(tmp_path: Path) -> None:
    # A 1 USD position limit: the first hedge trips it, and the bot goes reduce-only.
    settings = make_settings(tmp_path, max_position_usd=Decimal(1))
    async with journal_for(settings) as journal, running(settings, journal) as (runner, _tap, alerts):
        await until(lambda: "trading_state_changed" in alerts.events(), 20, "the trading state to change")
        assert runner.service.trading.state is TradingState.REDUCE_ONLY

    level, message = alerts.of("trading_state_changed")[0]
    assert level == "warning" and "active -> reduce_only (max_position)" in message


async def test_halt_resume_and_a_delta_outside_the_hard_limit_are_alerted_once_each(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hard_limit_bands=3)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, tap, alerts):
        await until(decided(runner), 10, "the first decision")
        await control.halt(journal, "maintenance", "pytest")
        await until(lambda: runner.service.trading.state is TradingState.HALTED, 5, "the halt to apply")
        await until(lambda: not runner.service.orders.in_flight, 5, "in-flight orders to settle")

        # 40 coins land in the account while the bot may not trade: 40 band half-widths out.
        tap.engine.adjust_balance(tap.account_id, "SOL", Decimal(40), runner.service.clock.now())
        await until(lambda: "delta_outside_hard_limit" in alerts.events(), 10, "the hard-limit alert")
        await asyncio.sleep(1)  # several more recomputes: still one alert
        assert alerts.events().count("delta_outside_hard_limit") == 1

        await control.resume(journal, "done", "pytest")
        await until(lambda: "delta_within_hard_limit" in alerts.events(), 20, "the delta back within")

    events = alerts.events()
    assert events.index("halted") < events.index("delta_outside_hard_limit") < events.index("resumed")
    level, message = alerts.of("delta_outside_hard_limit")[0]
    assert level == "error"
    assert message.startswith("SOL delta ") and "DK_HARD_LIMIT_BANDS=3" in message
    assert "not hedged: halted" in message and "trading state halted" in message
    assert alerts.of("halted")[0] == ("warning", "trading halted by pytest: maintenance")
    assert alerts.of("resumed")[0] == ("warning", "trading resumed by pytest: done")


async def test_a_stream_gone_quiet_is_alerted_stale_once_then_recovered(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, stale_secs=1)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, tap, alerts):
        await until(decided(runner), 10, "the first decision")
        assert "stream_stale" not in alerts.events()

        tap.drop_quotes = True
        await until(lambda: "stream_stale" in alerts.events(), 5, "the stale alert")
        await until(lambda: not runner.service.orders.in_flight, 5, "in-flight orders to settle")
        sent = len(tap.engine.orders(tap.account_id))
        await asyncio.sleep(1)  # more recomputes while it stays stale: no more alerts, and no order
        assert alerts.events().count("stream_stale") == 1
        assert len(tap.engine.orders(tap.account_id)) == sent

        tap.drop_quotes = False
        await until(lambda: "stream_recovered" in alerts.events(), 5, "the recovered alert")

    level, message = alerts.of("stream_stale")[0]
    assert level == "warning" and message.startswith(f"no fresh quote for {HEDGE} (")
    assert "DK_STALE_SECS=1" in message
    assert alerts.of("stream_recovered") == [("warning", f"quotes fresh again for {HEDGE}")]


async def test_one_markets_stale_alert_does_not_hold_back_anothers_through_apprise(tmp_path: Path) -> None:
    """The cool-down is per event and market: SOL's stream_stale after BTC's, within DK_ALERT_COOLDOWN_SECS,
    is sent too. (The scenario quotes SOL's markets only: BTC's perpetual is stale from the start.)"""
    btc = "BTC/USDT:USDT"
    assets = {"SOL": AssetSettings(hedge=HEDGE, band_coin=Decimal(1)), "BTC": AssetSettings(hedge=btc)}
    settings = make_settings(tmp_path, stale_secs=1, assets=assets)
    async with alert_receiver() as recv, journal_for(settings) as journal:
        alerts = AppriseAlerts([recv.url], "warning", cooldown_secs=600)
        await alerts.start()
        async with running(settings, journal, alerts) as (runner, tap, _):
            await until(lambda: bool(recv.messages("stream_stale")), 10, "BTC's stale alert")
            await until(decided(runner), 10, "the first decision")
            tap.drop_symbols = {HEDGE}
            await until(lambda: len(recv.messages("stream_stale")) == 2, 5, "SOL's stale alert")
            tap.drop_symbols = set()
            await until(lambda: bool(recv.messages("stream_recovered")), 5, "SOL's recovered alert")
        await alerts.aclose()

    stale = recv.messages("stream_stale")
    assert stale[0].startswith(f"no fresh quote for {btc} (no quote yet)")
    assert stale[1].startswith(f"no fresh quote for {HEDGE} (")
    assert recv.messages("stream_recovered") == [f"quotes fresh again for {HEDGE}"]


async def test_a_funding_rate_beyond_the_threshold_is_alerted_once_until_it_falls_back(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, funding_alert_bps=Decimal(10))
    async with journal_for(settings) as journal, running(settings, journal) as (runner, tap, alerts):
        await until(lambda: runner.service.counters.fills >= 1, 20, "the first hedge")
        tap.funding_rate = Decimal("0.0008")  # 8 bps: within
        await asyncio.sleep(1)
        assert "funding_rate_high" not in alerts.events()

        tap.funding_rate = Decimal("0.003")  # 30 bps per 8 h
        await until(lambda: "funding_rate_high" in alerts.events(), 5, "the funding alert")
        await asyncio.sleep(1)
        assert alerts.events().count("funding_rate_high") == 1

        tap.funding_rate = Decimal("0.0001")
        await asyncio.sleep(1)
        tap.funding_rate = Decimal("-0.002")
        await until(lambda: alerts.events().count("funding_rate_high") == 2, 5, "the re-armed alert")

    (level, first), (_, second) = alerts.of("funding_rate_high")
    assert level == "warning"
    assert first.startswith(f"{HEDGE} funding rate 0.3% per 8 h (30 bps, beyond DK_FUNDING_ALERT_BPS=10)")
    assert second.startswith(f"{HEDGE} funding rate -0.2% per 8 h (20 bps")
    # The hedge of a long spot inventory is short: it receives a positive rate and pays a negative one.
    assert "short" in first and first.endswith("receives it") and second.endswith("pays it")


async def test_periodic_reconciliation_alerts_what_the_streams_missed_and_nothing_else(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, reconcile_secs=0.5)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, _tap, alerts):
        await until(lambda: runner.service.counters.fills >= 2, 20, "two fills")
        await asyncio.sleep(2)  # several reconciliations while the bot trades: the streams missed nothing
        assert "reconciliation_mismatch" not in alerts.events(), alerts.of("reconciliation_mismatch")

        # Halted (no new fills), the journal loses its fills, as if the streams had never delivered them.
        await control.halt(journal, "test", "pytest")
        await until(lambda: runner.service.trading.state is TradingState.HALTED, 5, "the halt to apply")
        await until(lambda: not runner.service.orders.in_flight, 5, "in-flight orders to settle")
        async with journal.engine.begin() as conn:
            lost = (await conn.execute(fills_table.delete())).rowcount
        assert lost >= 2
        await until(lambda: "reconciliation_mismatch" in alerts.events(), 10, "the mismatch alert")
        refilled = await journal.list_fills()

    level, message = alerts.of("reconciliation_mismatch")[0]
    assert (level, message) == ("warning", f"reconciliation found what the streams missed: {lost} fills")
    assert len(refilled) == lost


async def test_margin_headroom_hook_alerts_once_below_the_threshold(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    readings: list[float | None] = [None, 0.5, 0.1, 0.05, 0.5, 0.15]

    async def headroom() -> float | None:
        return readings.pop(0)

    async with journal_for(settings) as journal:
        gateway, clock = build_sim_exchange(settings)
        alerts = RecordingAlerts()
        try:
            runner = await build_runner(settings, gateway, journal, clock, alerts)
            levels = HeadroomLevels(warn=Decimal("0.2"))
            watch = Watch(runner.service, margin_headroom=headroom, margin_levels=levels)
            for _ in range(6):
                await watch.check_margin()
        finally:
            await gateway.close()

    assert alerts.sent == [
        ("error", "margin_headroom_low", "margin headroom 10.0% of equity, below 20%"),
        ("error", "margin_headroom_low", "margin headroom 15.0% of equity, below 20%"),
    ]


# -- the daily summary ----------------------------------------------------------------------------


async def test_daily_summary_job_reports_the_days_trades_fees_funding_and_worst_deviation(
    tmp_path: Path,
) -> None:
    # 3600x: a funding settlement (every 8 simulated hours) within seconds.
    settings = make_settings(tmp_path, sim_speed=3600, daily_summary_at="07:30")
    async with journal_for(settings) as journal, alert_receiver() as recv:
        alerts = AppriseAlerts([recv.url], "warning", cooldown_secs=600)  # the default level
        await alerts.start()
        try:
            async with running(settings, journal, alerts) as (runner, _tap, _recording):
                await until(lambda: runner.scheduler is not None, 10, "the scheduler")
                assert runner.scheduler is not None
                job = runner.scheduler.get_job("daily_summary")
                assert job is not None and "hour='7', minute='30'" in str(job.trigger)
                assert str(job.trigger.timezone) == "UTC"
                deadline = time.monotonic() + 30
                while not await journal.list_funding():
                    assert time.monotonic() < deadline, "no funding payment in time"
                    await asyncio.sleep(0.2)
                fills_then = runner.service.counters.fills
                await until(lambda: runner.service.counters.fills >= fills_then + 2, 20, "more trades")

            all_fills = await journal.list_fills()
            all_funding = await journal.list_funding()
            all_decisions = await journal.list_decisions()
            # The summary's end inside the run: what came after it is left out.
            now = all_fills[-1]["ts"]
            summary = await runner.watch.daily_summary(now=now)
        finally:
            await alerts.aclose()

    assert summary is not None and summary.until == now and summary.since == now - timedelta(hours=24)
    window = [f for f in all_fills if summary.since <= f["ts"] < now]
    funding = [p for p in all_funding if summary.since <= p["ts"] < now]
    decisions = [d for d in all_decisions if summary.since <= d["ts"] < now]
    assert 0 < len(window) < len(all_fills) and funding and len(decisions) < len(all_decisions)
    assert all(f["fee_currency"] == "USDT" for f in window)
    assert summary.trades == len(window)
    assert summary.traded_usd == sum(Decimal(f["notional_usd"]) for f in window)
    assert summary.fees_usd == sum(Decimal(f["fee"]) for f in window) > 0
    assert summary.funding_usd == sum(Decimal(p["amount"]) for p in funding)
    assert summary.decisions == len(decisions)
    assert summary.rebalances == sum(1 for d in decisions if d["reason"] == "rebalance")
    deviations = [
        abs(Decimal(d["delta_coin"]) - Decimal(d["target_coin"])) / Decimal(d["band_coin"]) for d in decisions
    ]
    assert summary.worst is not None and summary.worst.asset == "SOL"
    assert summary.worst.bands == max(deviations)

    posted = [r for r in recv.received if r["title"] == "deltakeeper warning: daily_summary"]
    assert len(posted) == 1
    text = posted[0]["message"]
    assert text.startswith(f"24 h to {now:%Y-%m-%d %H:%M} UTC: {summary.trades} trades")
    assert f"fees ${summary.fees_usd:,.2f}" in text and "funding " in text
    assert f"worst deviation {round(summary.worst.bands, 2).normalize():f} bands (SOL delta" in text
