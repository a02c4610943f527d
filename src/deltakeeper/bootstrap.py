"""The composition root: the only module that builds adapters from settings and wires them together."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from deltakeeper.app.console import Console, RecentAlerts
from deltakeeper.app.control import OperatorControl, RecordEvent
from deltakeeper.app.cycle import CycleOptions
from deltakeeper.app.execution import ExecutionOptions, ExecutionStyle
from deltakeeper.app.journal_writes import WatchedJournal
from deltakeeper.app.margin_watch import MarginWatch
from deltakeeper.app.market_state import CoinNeutralMarketState
from deltakeeper.app.reconciliation import halt_on_foreign_order
from deltakeeper.app.runner import Runner
from deltakeeper.app.service import Core, ServiceOptions, build_service
from deltakeeper.app.watch import Watch
from deltakeeper.backtest.settings import BacktestSettings
from deltakeeper.config import Mode, Settings
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.instruments import Instrument, is_stable
from deltakeeper.domain.policy import (
    AssetPolicy,
    BandUnit,
    RebalanceTo,
    auto_hedge_symbol,
    min_band_coin,
    price_symbol,
)
from deltakeeper.domain.price_gate import GateLimits, PriceGate
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.risk import RiskLimits
from deltakeeper.ports import Alerts, Clock, Exchange

if TYPE_CHECKING:
    from deltakeeper.adapters.http import HttpServer
    from deltakeeper.adapters.journal.store import SqlJournal, TraderLock

log = structlog.get_logger("deltakeeper")
T = TypeVar("T")


def resolve_policies(
    settings: Settings, instruments: Mapping[str, Instrument], account: AccountSnapshot
) -> tuple[dict[str, AssetPolicy], dict[str, str]]:
    """Policies per hedged asset, and the pricing market of every asset the account can hold.

    With no `DK_ASSETS__*`, every non-stable asset held (or declared external) that has a USD-margined
    perpetual is hedged with it, at target 0 and the default band (DESIGN.md 11)."""
    held = {a for a, q in account.balances.items() if q != 0 and not is_stable(a)} | set(settings.external)
    held |= {instruments[p.symbol].base for p in account.positions if p.symbol in instruments}
    rebalance_to = RebalanceTo(settings.rebalance_to)
    policies: dict[str, AssetPolicy] = {}
    if settings.assets:
        for asset, spec in settings.assets.items():
            symbol = spec.hedge or auto_hedge_symbol(asset, instruments)
            variable = f"DK_ASSETS__{asset}__HEDGE"
            if symbol is None:
                raise ConfigError(
                    variable, f"a hedge market: the exchange lists no USD-margined perpetual on {asset}"
                )
            if symbol not in instruments or not instruments[symbol].is_derivative:
                raise ConfigError(variable, "a derivative market the exchange lists", symbol)
            policies[asset] = AssetPolicy(
                asset, symbol, spec.band(settings.default_band), spec.target, rebalance_to
            )
    else:
        for asset in sorted(held):
            symbol = auto_hedge_symbol(asset, instruments)
            if symbol is not None:
                policies[asset] = AssetPolicy(asset, symbol, settings.default_band, Decimal(0), rebalance_to)
    prices: dict[str, str] = {}
    for asset in held | set(policies):
        symbol = policies[asset].hedge_symbol if asset in policies else price_symbol(asset, instruments)
        if asset in policies and instruments[policies[asset].hedge_symbol].base != asset:
            symbol = price_symbol(asset, instruments)  # a proxy hedge: the asset is priced by its own market
            if symbol is None:
                raise ConfigError(f"DK_ASSETS__{asset}__HEDGE",
                                  f"a hedge on {asset} itself: no market on the exchange prices {asset}",
                                  policies[asset].hedge_symbol)
        if symbol is not None:
            prices[asset] = symbol
    for policy in policies.values():  # a proxy hedge's position needs its own asset's price
        base = instruments[policy.hedge_symbol].base
        if base not in prices:
            prices[base] = price_symbol(base, instruments) or policy.hedge_symbol
    return policies, prices


def resolve_betas(
    settings: Settings, policies: Mapping[str, AssetPolicy], instruments: Mapping[str, Instrument]
) -> dict[str, Decimal | None]:
    """`DK_ASSETS__<ASSET>__BETA` of every proxy-hedged asset (None: the EWMA estimate; unset: 1). A hedge
    market is one asset's only: two assets hedged on one contract would trade against each other."""
    betas: dict[str, Decimal | None] = {}
    hedged_by: dict[str, str] = {}
    for asset, policy in sorted(policies.items()):
        other = hedged_by.setdefault(policy.hedge_symbol, asset)
        if other != asset:
            raise ConfigError(f"DK_ASSETS__{asset}__HEDGE",
                              f"a hedge market no other asset uses ({other} is hedged with it)",
                              policy.hedge_symbol)
        spec = settings.assets.get(asset)
        beta = spec.beta if spec is not None else None
        if instruments[policy.hedge_symbol].base == asset:
            if beta is not None and beta != "ewma" and Decimal(beta) == 1:
                continue
            if beta is not None:
                raise ConfigError(f"DK_ASSETS__{asset}__BETA",
                                  f"no beta: {policy.hedge_symbol} is a contract on {asset} itself; "
                                  "a beta is for a hedge on another asset (DK_ASSETS__<ASSET>__HEDGE)", beta)
            continue
        betas[asset] = None if beta == "ewma" else Decimal(beta or 1)
    return betas


def check_bands(policies: Mapping[str, AssetPolicy], instruments: Mapping[str, Instrument]) -> None:
    """A coin band narrower than one lot step of a linear hedge can never be held: refuse to start.
    (USD and percentage bands, and inverse hedges, depend on the price: the policy's rounding handles
    them, recording `rounds_to_zero` when the band is too narrow for a trade.)"""
    for asset, policy in policies.items():
        hedge = instruments[policy.hedge_symbol]
        if policy.band.unit is not BandUnit.COIN or hedge.inverse or hedge.base != asset:
            continue
        narrowest = min_band_coin(hedge, Decimal(1))
        if policy.band.half_width * 2 < narrowest:
            raise ConfigError(
                f"DK_ASSETS__{asset}__BAND_COIN",
                f"a band at least one lot step of {hedge.symbol} wide ({narrowest} {asset} in all)",
                str(policy.band.half_width),
            )


def build_sim_exchange(settings: Settings, account_id: str = "sim") -> tuple[Exchange, Clock]:
    """The simulated exchange: the bundled SOL history replayed from now on the simulated clock, then a
    seeded random walk from where it ends; the market-maker scenario moves the spot inventory. The rally
    scenario instead starts 1,000 SOL and 11,000 USDT on `sim.feeds.rally_feed` from 100 USDT: the
    short perp that hedges the SOL runs out of margin about five simulated hours in."""
    import itertools

    from deltakeeper.sim.clock import SimClock
    from deltakeeper.sim.engine import SimEngine
    from deltakeeper.sim.feeds import bundled_bars, replay_feed, synthetic_feed
    from deltakeeper.sim.gateway import SimGateway
    from deltakeeper.sim.markets import default_instruments
    from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

    clock = SimClock(settings.sim_speed)
    bars = bundled_bars()
    tick_secs = int(settings.sim_tick_secs)
    replay = replay_feed(bars, tick_secs=tick_secs, seed=settings.sim_seed, start=clock.now())
    history_secs = (bars[-1].ts - bars[0].ts).total_seconds()
    continuation = synthetic_feed(
        start=clock.now() + timedelta(seconds=history_secs + 3600),
        price=bars[-1].close,
        tick_secs=tick_secs,
        seed=settings.sim_seed,
    )
    scenario = None
    if settings.sim_scenario == "market-maker":
        scenario = InventoryScenario(ScenarioParams(seed=settings.sim_seed))
    # Ids come from the engine's seeded generator: mix in the start so that a second run on the same
    # journal does not repeat the first run's trade ids (which the journal would take as duplicates).
    engine_seed = settings.sim_seed * 1_000_003 + int(clock.now().timestamp())
    engine = SimEngine(default_instruments(), seed=engine_seed)
    if settings.sim_scenario == "rally":  # 1,000 SOL, 11,000 USDT: enough for a 10x short perp of 1,000
        from deltakeeper.sim.feeds import rally_feed

        engine.open_account(account_id, {"SOL": Decimal(1000), "USDT": Decimal(11_000)})
        feed = rally_feed(start=clock.now(), price=100.0, tick_secs=tick_secs, seed=settings.sim_seed)
        return SimGateway(engine, feed, clock, None, account_id), clock
    gateway = SimGateway(engine, itertools.chain(replay, continuation), clock, scenario, account_id)
    return gateway, clock


def build_exchange(settings: Settings) -> tuple[Exchange, Clock]:
    if settings.mode is Mode.PAPER:
        raise ConfigError("DK_MODE", "live or shadow: paper trading is not available yet", "paper")
    if settings.exchange == "sim":
        return build_sim_exchange(settings)
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange
    from deltakeeper.sim.clock import WallClock

    clock = WallClock()
    exchange = CcxtExchange(
        settings.exchange,
        api_key=settings.secret("api_key"),
        secret=settings.secret("api_secret"),
        password=settings.secret("api_password"),
        base_url=settings.exchange_url,
        sandbox=settings.sandbox,
        clock=clock,
        stale_after_secs=settings.stale_secs,
        request_timeout_secs=EXCHANGE_REQUEST_TIMEOUT_SECS,
    )
    return exchange, clock


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


def build_alerts(settings: Settings) -> Alerts:
    from deltakeeper.adapters.alerts import AppriseAlerts, parse_alert_urls

    return AppriseAlerts(
        parse_alert_urls(settings.alert_urls or ""), settings.alert_level, settings.alert_cooldown_secs
    )


def control_event_recorder(journal: SqlJournal) -> RecordEvent:
    """Journal a control event the journal has no writer for (a `cancel-all` request): a row of the
    existing `control_events` table, beside the halts and resumes `set_control_state` journals."""
    from deltakeeper.adapters.journal.models import control_events

    async def record(action: str, by: str, reason: str, ts: datetime) -> None:
        async with journal.engine.begin() as conn:
            row = {"ts": ts, "action": action, "by": by[:128], "reason": reason}
            await conn.execute(control_events.insert().values(row))

    return record


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
    from deltakeeper.adapters.journal.store import LOCK_POLL_SECS, take_trader_lock

    check_bind(settings.http_host, settings.secret("http_token"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if not stop.is_set():
            stop.set()
            loop.call_later(SLOW_STOP_SECS, _log_slow_stop)

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
    policies, price_symbols = resolve_policies(settings, instruments, account)
    check_bands(policies, instruments)
    betas = resolve_betas(settings, policies, instruments)
    coin_neutral = frozenset(a for a, spec in settings.assets.items() if spec.neutral == "coin")
    gate = PriceGate(GateLimits(settings.price_jump_pct, settings.price_confirm_secs, settings.stale_secs))
    state = CoinNeutralMarketState(
        instruments, dict(settings.external), price_symbols, clock=clock, gate=gate, coin_neutral=coin_neutral
    )
    limits = RiskLimits(
        settings.max_order_usd,
        settings.max_daily_traded_usd,
        settings.max_position_usd,
        settings.stale_secs,
        settings.price_collar_bps,
        settings.margin_min_headroom_pct / 100,
        settings.margin_critical_headroom_pct / 100,
    )
    cycle = CycleOptions(
        policy=BacktestSettings.from_settings(settings).policy(settings.policy),
        execution=ExecutionOptions(
            ExecutionStyle(settings.execution),
            settings.post_only_timeout_secs,
            settings.slice_max_usd,
            settings.slice_max_slippage_bps,
        ),
        betas=betas,
        ewma_daily_decay=settings.ewma_daily_decay,
    )
    options = ServiceOptions(limits, settings.order_timeout_secs, settings.state_clear_secs, cycle)
    if settings.mode is Mode.SHADOW:
        from deltakeeper.adapters.shadow import ShadowExchange

        exchange = ShadowExchange(exchange)
    journal_writes = WatchedJournal(journal)
    core = Core.new(alerts, settings.state_clear_secs, holds_lock)
    control = OperatorControl(core.trading, exchange, alerts, core.counters, journal,
                              control_event_recorder(journal))
    margin = MarginWatch(
        state, exchange, clock, journal_writes, alerts, core.trading, core.counters, core.decisions, policies,
        min_headroom=limits.min_margin_headroom,
        warn_headroom=settings.margin_warn_headroom_pct / 100,
        critical_headroom=limits.critical_margin_headroom,
    )
    service = build_service(
        exchange, journal_writes, clock, alerts, state, policies, options, core=core, margin=margin.context,
        on_liquidation=margin.on_liquidation,
        on_foreign_order=functools.partial(halt_on_foreign_order, control, alerts),
    )
    held = {p.symbol for p in account.positions}
    await margin.load_tiers(held | {p.hedge_symbol for p in policies.values()})
    watch = Watch(
        service,
        hard_limit_bands=settings.hard_limit_bands,
        funding_alert_bps=settings.funding_alert_bps,
        reader=journal,
        daily_summary_at=settings.daily_summary_at,
        margin_headroom=margin,
        margin_alert_fraction=float(settings.margin_warn_headroom_pct) / 100,
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


EXCHANGE_REQUEST_TIMEOUT_SECS = 10.0
"""Every REST request to an exchange ends within this (ccxt's timeout)."""
RECONCILE_REQUESTS = 5
"""Exchange requests of a periodic reconciliation: open orders, a cancel, fills, funding, the account."""
STOP_CLOSE_SECS = 1.0
"""Closing the journal's connections and the exchange's sessions, beyond one request's timeout."""


def stop_bound_secs(settings: Settings) -> float:
    """The longest a stop (SIGTERM, SIGINT) takes, every exchange request ending within its timeout R
    (EXCHANGE_REQUEST_TIMEOUT_SECS), T = max(DK_ORDER_TIMEOUT_SECS, DK_POST_ONLY_TIMEOUT_SECS), and H the
    longest an exchange's rate-limit pause holds the requests (Retry-After, at most RETRY_AFTER_MAX_SECS),
    once in each phase:

    - a scheduled job under way finishes: a periodic reconciliation waits for the orders in flight (at most
      DK_ORDER_TIMEOUT_SECS + QUIET_WAIT_EXTRA_SECS), then makes RECONCILE_REQUESTS requests, held once;
    - the orders in flight settle (side by side): the send under way, and the rate-limit pause after it
      (a stopping bot sends a refused order no more), the wait T, the poll that overshoots it, the cancel,
      the last look-up, the account refresh, held once;
    - the HTTP server, the exchange, the journal and the alerts' last deliveries close.

    About 362 s at the defaults; a stop with nothing in flight takes a second or two. Deployments give
    the process at least this long before a SIGKILL (which is survived too: the next start reconciles)."""
    from deltakeeper.adapters.alerts import FLUSH_SECS
    from deltakeeper.adapters.ccxt_parse import RETRY_AFTER_MAX_SECS
    from deltakeeper.adapters.http import HTTP_STOP_SECS
    from deltakeeper.app.orders import SETTLE_POLL_SECS
    from deltakeeper.app.runner import QUIET_WAIT_EXTRA_SECS

    request = EXCHANGE_REQUEST_TIMEOUT_SECS
    hold = RETRY_AFTER_MAX_SECS
    job = settings.order_timeout_secs + QUIET_WAIT_EXTRA_SECS + RECONCILE_REQUESTS * request + hold
    send = request + hold
    order_wait = max(settings.order_timeout_secs, settings.post_only_timeout_secs)
    settle = order_wait + 2 * (SETTLE_POLL_SECS + request) + hold
    drain = send + settle + 2 * request  # and the cancel, and the account refresh
    close = HTTP_STOP_SECS + request + STOP_CLOSE_SECS + FLUSH_SECS
    return job + drain + close


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


SLOW_STOP_SECS = 10.0
"""After this long stopping (in-flight orders settle first, each within DK_ORDER_TIMEOUT_SECS), the tasks
still running are logged with where each waits (`stop_slow`)."""


def _log_slow_stop() -> None:
    waiting = [f"{task.get_name()}: {_awaiting(task.get_coro())}" for task in asyncio.all_tasks()
               if not task.done()]
    log.warning("stop_slow", after_secs=SLOW_STOP_SECS, tasks=waiting)


def _awaiting(awaitable: object) -> str:
    """Where a coroutine waits: its chain of awaits, innermost 3 first."""
    calls = []
    while awaitable is not None:
        code = getattr(awaitable, "cr_code", None) or getattr(awaitable, "gi_code", None)
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if code is not None and frame is not None:
            calls.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return " < ".join(reversed(calls[-3:]))


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
