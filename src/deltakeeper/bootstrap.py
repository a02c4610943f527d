"""The composition root: the only module that builds adapters from settings and wires them together."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from deltakeeper.app.console import Console, RecentAlerts
from deltakeeper.app.control import OperatorControl
from deltakeeper.app.cycle import CycleOptions
from deltakeeper.app.execution import ExecutionOptions, ExecutionStyle
from deltakeeper.app.journal_writes import WatchedJournal
from deltakeeper.app.margin_watch import MarginWatch
from deltakeeper.app.market_state import CoinNeutralMarketState
from deltakeeper.app.reconciliation import halt_on_foreign_order
from deltakeeper.app.runner import Runner
from deltakeeper.app.service import Core, ServiceOptions, build_service
from deltakeeper.app.venue_margin import VenueMarginView
from deltakeeper.app.watch import Watch
from deltakeeper.config import Mode, Settings
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.price_gate import GateLimits, PriceGate
from deltakeeper.exchanges import build_exchange
from deltakeeper.exchanges import build_sim_exchange as build_sim_exchange  # the tests' simulated exchange
from deltakeeper.policy_settings import (
    carry_perps,
    check_bands,
    live_policy,
    margin_levels,
    resolve_betas,
    resolve_policies,
    risk_limits,
)
from deltakeeper.ports import Alerts, Clock, Exchange
from deltakeeper.stopping import SLOW_STOP_SECS, log_slow_stop

if TYPE_CHECKING:
    from deltakeeper.adapters.http import HttpServer
    from deltakeeper.adapters.journal.lock import TraderLock
    from deltakeeper.adapters.journal.store import SqlJournal

log = structlog.get_logger("deltakeeper")
T = TypeVar("T")


async def check_key_permissions(settings: Settings, exchange: Exchange) -> None:
    """Refuse a key that can withdraw, where the exchange tells, unless the owner allows it."""
    if settings.exchange == "sim":
        return
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange

    if not isinstance(exchange, CcxtExchange) or not await exchange.key_can_withdraw():
        return
    log.warning("api_key_can_withdraw", allowed=settings.allow_withdraw_key)
    if not settings.allow_withdraw_key:
        raise ConfigError("DK_API_KEY", "a key without withdrawal permission, or DK_ALLOW_WITHDRAW_KEY=true")


def track_markets(exchange: Exchange, symbols: set[str]) -> None:
    """A ccxt exchange reads fills on the bot's markets from the start's reconciliation on, where the venue
    lists fills per market only (a liquidation of the hedge while the bot was down is found at start)."""
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange

    if isinstance(exchange, CcxtExchange):
        exchange.track_markets(sorted(symbols))


def build_alerts(settings: Settings) -> Alerts:
    from deltakeeper.adapters.alerts import AppriseAlerts, parse_alert_urls

    return AppriseAlerts(
        parse_alert_urls(settings.alert_urls or ""), settings.alert_level, settings.alert_cooldown_secs
    )


def http_port_path(settings: Settings) -> Path:
    """Where the running service writes the port its HTTP server is bound to (DK_HTTP_PORT=0 picks a
    free one), for `deltakeeper status` and `healthcheck`; removed when the service stops."""
    return settings.data_dir / "http_port"


ExchangeFactory = Callable[[Settings], tuple[Exchange, Clock]]


async def run_service(
    settings: Settings, duration_secs: float | None = None, exchange_factory: ExchangeFactory = build_exchange
) -> None:
    """Stand by until this process holds the trader lock; then upgrade the journal, wire everything and
    trade until stopped. A lost lock stops the sending at once, then the trading, and the process stands
    by again (a takeover reconciles before it trades, as a start does)."""
    from deltakeeper.adapters.http import check_bind
    from deltakeeper.adapters.journal.lock import LOCK_POLL_SECS, take_trader_lock

    check_bind(settings.http_host, settings.secret("http_token"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if not stop.is_set():
            stop.set()
            loop.call_later(SLOW_STOP_SECS, log_slow_stop)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    if duration_secs is not None:
        loop.call_later(duration_secs, request_stop)
    lost = False
    while not stop.is_set():
        first_try_after_secs = LOCK_POLL_SECS * 3 if lost else 0  # a standby's turn first
        standby = build_standby_server(settings)
        await _serve_http(settings, standby)
        try:
            lock = await _unless_stopped(stop, take_trader_lock(
                settings.database, settings.data_dir, first_try_after_secs=first_try_after_secs
            ))
        finally:
            await _stop_http(settings, standby)
        if lock is None:
            return
        try:
            await _trade(settings, exchange_factory, lock, stop)
        finally:
            await lock.release()
        lost = not lock.held()


async def _unless_stopped(stop: asyncio.Event, waiting: Coroutine[object, object, T]) -> T | None:
    """`waiting`'s result, or None (and `waiting` cancelled) if `stop` comes first."""
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _trade(settings: Settings, exchange_factory: ExchangeFactory, lock: TraderLock,
                 stop: asyncio.Event) -> None:
    """Trade while holding `lock`: the schema is upgraded by the lock's holder only."""
    from deltakeeper.adapters.journal.migrate import upgrade
    from deltakeeper.adapters.journal.store import create_journal

    await asyncio.to_thread(upgrade, settings.database)
    exchange, clock = exchange_factory(settings)
    journal = create_journal(settings.database, settings.journal_timeout_secs)
    alerts = build_alerts(settings)
    await alerts.start()  # type: ignore[attr-defined]
    try:
        await _serve(settings, exchange, journal, clock, alerts, stop, lock)
    finally:
        await exchange.close()
        await journal.close()
        await alerts.aclose()  # type: ignore[attr-defined]


async def build_runner(
    settings: Settings, exchange: Exchange, journal: SqlJournal, clock: Clock, alerts: Alerts,
    holds_lock: Callable[[], bool] = lambda: True,
) -> Runner:
    """The trading service, its Runner and the operator's control, for the exchange's account (in shadow
    mode behind an exchange adapter that sends nothing). Nothing is decided or sent once `holds_lock`
    answers False."""
    instruments = await exchange.load_instruments()
    await check_key_permissions(settings, exchange)
    account = await exchange.fetch_account()
    policies, price_symbols = resolve_policies(settings, instruments, account, clock.now())
    check_bands(policies, instruments)
    betas = resolve_betas(settings, policies, instruments)
    coin_neutral = frozenset(a for a, spec in settings.assets.items() if spec.neutral == "coin")
    gate = PriceGate(GateLimits(settings.price_jump_pct, settings.price_confirm_secs, settings.stale_secs))
    state = CoinNeutralMarketState(
        instruments, dict(settings.external), price_symbols, clock=clock, gate=gate, coin_neutral=coin_neutral
    )
    limits = risk_limits(settings)
    levels = margin_levels(settings)
    cycle = CycleOptions(
        policy=live_policy(settings),
        execution=ExecutionOptions(
            ExecutionStyle(settings.execution),
            settings.post_only_timeout_secs,
            settings.slice_max_usd,
            settings.slice_max_slippage_bps,
        ),
        betas=betas,
        ewma_daily_decay=settings.ewma_daily_decay,
        roll_window_secs=settings.roll_window_secs,
        carry_perps=carry_perps(settings, policies),
    )
    options = ServiceOptions(limits, settings.order_timeout_secs, settings.state_clear_secs, cycle)
    track_markets(exchange, {p.hedge_symbol for p in policies.values()} | set(price_symbols.values()))
    if settings.mode is Mode.SHADOW:
        from deltakeeper.adapters.shadow import ShadowExchange

        exchange = ShadowExchange(exchange)
    journal_writes = WatchedJournal(journal)
    core = Core.new(alerts, settings.state_clear_secs, holds_lock)
    control = OperatorControl(
        core.trading, exchange, alerts, core.counters, journal, journal.record_control_event
    )
    margin = MarginWatch(
        state, exchange, clock, journal_writes, alerts, core.trading, core.counters, core.decisions, policies,
        levels=levels,
    )
    service = build_service(
        exchange, journal_writes, clock, alerts, state, policies, options, core=core, margin=margin.context,
        on_liquidation=margin.on_liquidation,
        on_foreign_order=functools.partial(halt_on_foreign_order, control, alerts),
    )
    held = {p.symbol for p in account.positions}
    await margin.load_tiers(held | {p.hedge_symbol for p in policies.values()})
    margin.venue = VenueMarginView(exchange, clock)
    await margin.venue.refresh()  # logs the account's margin mode
    watch = Watch(
        service,
        hard_limit_bands=settings.hard_limit_bands,
        funding_alert_bps=settings.funding_alert_bps,
        reader=journal,
        daily_summary_at=settings.daily_summary_at,
        margin_headroom=margin,
        margin_levels=levels,
        blind_alert_secs=settings.blind_alert_secs,
    )
    runner = Runner(
        service,
        settings.recompute_secs,
        settings.reconcile_secs,
        settings.data_dir / "heartbeat",
        control=control,
        watch=watch,
        journal_writes=journal_writes,
    )
    log.info(
        "policies",
        policy=settings.policy,
        execution=settings.execution,
        **{a: f"{p.hedge_symbol} band {p.band.half_width}{p.band.unit.value}"
           + (f" beta {betas[a] if betas[a] is not None else 'ewma'}" if a in betas else "")
           for a, p in policies.items()},
    )
    if not policies:
        log.warning("nothing_to_hedge", held=sorted(price_symbols))
    return runner


def build_http_server(
    settings: Settings, runner: Runner, journal: SqlJournal, alerts: RecentAlerts | None = None
) -> HttpServer:
    from deltakeeper.adapters.http import HttpServer
    from deltakeeper.adapters.journal.console import ConsoleReads
    from deltakeeper.adapters.metrics import BotMetrics
    from deltakeeper.app.console import journal_api
    from deltakeeper.app.status import build_status, is_alive, metrics_snapshot, readiness

    registry = BotMetrics()
    runner.service.orders.sender.observe_tick_to_order_secs = registry.observe_tick_to_order
    if runner.journal_writes is not None:
        runner.journal_writes.observe_write_secs = registry.observe_journal_write

    async def metrics() -> str:
        ready, _details = await readiness(runner)
        return registry.render({**metrics_snapshot(runner), "ready": ready})

    return HttpServer(
        settings.http_host,
        settings.http_port,
        settings.secret("http_token"),
        status=lambda: build_status(runner),
        metrics=metrics,
        ready=lambda: readiness(runner),
        control=runner.control.handle if runner.control is not None else None,
        journal_api=journal_api(journal),
        alive=lambda: is_alive(runner),
        allowed_hosts=settings.http_allowed_hosts.split(","),
        allow_unauthenticated_control=settings.http_allow_unauthenticated_control,
        console=Console(runner.service.clock.now, lambda coin: runner.service.state.price_usd(coin),
                        ConsoleReads(journal), alerts),
    )


def build_standby_server(settings: Settings) -> HttpServer:
    """The HTTP server of a process waiting for the trader lock: alive, not ready, nothing to control."""
    from deltakeeper.adapters.http import HttpServer
    from deltakeeper.adapters.metrics import BotMetrics

    registry = BotMetrics()

    async def not_ready() -> tuple[bool, dict[str, Any]]:
        return False, {"trader_lock": "waiting: another instance trades this journal"}

    async def metrics() -> str:  # the process's, and that it stands by
        return registry.render({"standby": True, "ready": False})

    return HttpServer(
        settings.http_host, settings.http_port, settings.secret("http_token"),
        status=lambda: {"trading_state": "standby"}, metrics=metrics, ready=not_ready,
        control=None, journal_api=None, alive=lambda: True,
    )


async def _serve_http(settings: Settings, server: HttpServer) -> None:
    """Start `server`, its port written where `status` and `healthcheck` look."""
    port = await server.start()
    http_port_path(settings).write_text(f"{port}\n")


async def _stop_http(settings: Settings, server: HttpServer) -> None:
    http_port_path(settings).unlink(missing_ok=True)
    await server.stop()


async def _serve(
    settings: Settings,
    exchange: Exchange,
    journal: SqlJournal,
    clock: Clock,
    alerts: Alerts,
    stop: asyncio.Event,
    lock: TraderLock,
) -> None:
    recent_alerts = RecentAlerts(alerts)  # every alert passes through it: the console shows the newest
    alerts = recent_alerts
    runner = await build_runner(settings, exchange, journal, clock, alerts, lock.held)
    trading = runner.service.trading
    session_stop = asyncio.Event()
    """Set when the service stops, or the trader lock is lost."""
    lost_alerts: list[asyncio.Task[None]] = []

    def lock_lost(cause: str) -> None:
        # Synchronous, in the lock's callback: `trading.holds_lock` is False from now on, so that nothing is
        # decided or sent (whatever resumes trading) and reconciliation cancels nothing; HALTED shows it.
        trading.halt(f"trader lock lost: {cause}")
        log.error("trader_lock_lost", cause=cause)
        lost_alerts.append(asyncio.create_task(alerts.send(
            "error", "trader_lock_lost", f"trader lock lost ({cause}): no order is sent; standing by"
        )))
        session_stop.set()

    lock.on_lost(lock_lost)
    forward = asyncio.create_task(stop.wait())
    forward.add_done_callback(lambda _: session_stop.set())
    server = build_http_server(settings, runner, journal, recent_alerts)
    try:
        await _serve_http(settings, server)
        await runner.run(session_stop)
    finally:
        forward.cancel()
        await _stop_http(settings, server)
        await asyncio.gather(*lost_alerts, return_exceptions=True)
