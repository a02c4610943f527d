"""The running bot's state at a glance, for the HTTP API (`/api/status`, `/metrics`, the probes) and
`deltakeeper status`: plain dicts built from the Runner and its Service, never from the exchange."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from deltakeeper.app.figures import COIN_STEP, coins, ratio, sum_known, usd
from deltakeeper.app.margin_watch import margin_watch_of
from deltakeeper.app.runner import ACCOUNT_READ_MAX_RECOMPUTES, Runner
from deltakeeper.app.service import Service
from deltakeeper.domain.instruments import STABLECOINS
from deltakeeper.domain.usd import to_usd

DATABASE_CHECK_SECS = 5.0



def heartbeat_max_age_secs(recompute_secs: float) -> float:
    """How old the heartbeat may be while the loop counts as alive (the CLI's healthcheck uses it too)."""
    return max(3 * recompute_secs, 30.0)


def watched_symbols(service: Service) -> list[str]:
    """Every symbol the bot streams quotes for: the hedges and the markets that price the assets."""
    return service.symbols()


def stream_ages_secs(service: Service, now_monotonic: float | None = None) -> dict[str, float]:
    """Wall seconds since the last quote arrived, per watched symbol (infinite before the first)."""
    now = time.monotonic() if now_monotonic is None else now_monotonic
    received = service.state.received_at
    return {s: now - received[s] if s in received else float("inf") for s in watched_symbols(service)}


def asset_views(service: Service) -> dict[str, dict[str, Any]]:
    """Per hedged asset: delta, target, band (from the last decision), deviation in band half-widths,
    price, hedge symbol and position, the last decision and why."""
    deltas = service.state.deltas()
    account = service.state.account
    views: dict[str, dict[str, Any]] = {}
    for asset, policy in sorted(service.policies.items()):
        delta = deltas.get(asset)
        decision = service.decisions.last.get(asset)
        target = decision.target_coin if decision is not None else policy.target_coin
        band = decision.band_coin if decision is not None else None
        delta_coin = delta.delta_coin if delta is not None else None
        deviation = None
        if delta_coin is not None and band is not None and band > 0:
            deviation = float((delta_coin - target) / band)
        position = None
        if account is not None:
            position = sum(
                (p.contracts for p in account.positions if p.symbol == policy.hedge_symbol), Decimal(0)
            )
        views[asset] = {
            "delta_coin": delta_coin,
            "delta_usd": delta.delta_usd if delta is not None else None,
            "target_coin": target,
            "band_coin": band,
            "deviation": deviation,
            "price_usd": service.state.price_usd(asset),
            "hedge_symbol": policy.hedge_symbol,
            "position_contracts": position,
            "in_flight": service.orders.in_flight.get(policy.hedge_symbol),
            "last_decision": None
            if decision is None
            else {
                "reason": decision.reason,
                "detail": decision.detail,
                "ts": decision.ts,
                "decision_id": decision.decision_id,
            },
        }
    return views


def build_status(runner: Runner) -> dict[str, Any]:
    """The JSON of `/api/status`. Money is rounded for reading (see `usd`, `coins`, `ratio`): USD to
    cents, coins to 8 places, contracts to the instrument's lot step, ratios to 4 places."""
    service = runner.service
    control = runner.control.state if runner.control is not None else None
    heartbeat_age = time.time() - runner.last_beat if runner.last_beat is not None else None
    stale_secs = service.options.limits.stale_secs
    positions = position_views(service)
    return {
        "ts": datetime.now(UTC),
        "exchange": service.exchange.name,
        "exchange_ts": service.clock.now(),
        "trading": {"state": service.trading.state.value, "cause": service.trading.cause},
        "control": None
        if control is None
        else {"halted": control.halted, "reason": control.reason, "by": control.by, "ts": control.ts},
        "reconciled": runner.reconciled,
        "heartbeat_age_secs": None if heartbeat_age is None else round(heartbeat_age, 3),
        "assets": {asset: _rounded_asset(service, view) for asset, view in asset_views(service).items()},
        "positions": positions,
        "hedge_unrealised_pnl_usd": sum_known(p["unrealised_pnl_usd"] for p in positions),
        "streams": {
            symbol: {"age_secs": None if age == float("inf") else round(age, 3), "stale": age > stale_secs}
            for symbol, age in stream_ages_secs(service).items()
        },
        "stale_limit_secs": stale_secs,
        "stablecoins": sorted(STABLECOINS),
        "in_flight": dict(service.orders.in_flight),
        "traded_today_usd": usd(service.daily.today_usd(service.clock.now())),
        "margin": _rounded_margin(margin.status()) if (margin := margin_watch_of(runner.watch)) else None,
    }


def _rounded_asset(service: Service, view: Mapping[str, Any]) -> dict[str, Any]:
    instrument = service.state.instruments.get(view["hedge_symbol"])
    lot = instrument.lot_step_contracts if instrument is not None else COIN_STEP
    return {
        **view,
        **{k: coins(view[k]) for k in ("delta_coin", "target_coin", "band_coin")},
        "delta_usd": usd(view["delta_usd"]),
        "deviation": ratio(view["deviation"]),
        "position_contracts": coins(view["position_contracts"], lot),
    }


_MARGIN_RATIOS = frozenset({"headroom", "min_headroom", "warn_headroom", "critical_headroom",
                            "liquidation_move", "maintenance_ratio", "estimate_maintenance_ratio"})
_MARGIN_AMOUNTS = frozenset({"equity", "initial_margin", "maintenance_margin", "estimated_maintenance_margin",
                             "contracts", "mark_price", "liquidation_price", "estimated_liquidation_price"})


def _rounded_margin(value: Any, key: str = "") -> Any:
    """The margin status with its ratios to 4 places, its amounts (in the settle coin) and prices to 8."""
    if isinstance(value, Mapping):
        return {k: _rounded_margin(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded_margin(v, key) for v in value]
    if key in _MARGIN_RATIOS:
        return ratio(value)
    if key in _MARGIN_AMOUNTS and isinstance(value, Decimal):
        return coins(value)
    return value


def position_views(service: Service) -> list[dict[str, Any]]:
    """The account's derivative positions as last read: size (to the lot step), prices (8 places),
    unrealised PnL in the settle coin and in USD (None when the exchange did not say, or the settle coin
    has no price)."""
    account = service.state.account
    if account is None:
        return []
    views = []
    for p in account.positions:
        instrument = service.state.instruments.get(p.symbol)
        settle = instrument.settle if instrument is not None else "USD"
        lot = instrument.lot_step_contracts if instrument is not None else COIN_STEP
        pnl = p.unrealized_pnl
        pnl_usd = to_usd(pnl, settle, service.state.price_usd) if pnl is not None else None
        views.append({
            "symbol": p.symbol,
            "contracts": coins(p.contracts, lot),
            "entry_price": coins(p.entry_price),
            "mark_price": coins(p.mark_price),
            "liquidation_price": coins(p.liquidation_price),
            "settle": settle,
            "unrealised_pnl": coins(pnl),
            "unrealised_pnl_usd": usd(pnl_usd),
        })
    return sorted(views, key=lambda v: v["symbol"])


def metrics_snapshot(runner: Runner) -> dict[str, Any]:
    """The snapshot `adapters.metrics.BotMetrics.render` turns into Prometheus text (less `ready`, which
    the caller adds from `readiness`)."""
    service = runner.service
    counters = service.counters
    assets = {
        asset: {
            k: view[k]
            for k in ("delta_coin", "delta_usd", "target_coin", "band_coin", "deviation")
            if view[k] is not None
        }
        for asset, view in asset_views(service).items()
    }
    return {
        "assets": assets,
        "orders_total": dict(counters.orders),
        "fills_total": counters.fills,
        "fees_usd_total": counters.fees_usd,
        "funding_usd_total": counters.funding_usd,
        "errors_total": counters.errors,
        "journal_write_failures_total": writes.write_failures if (writes := runner.journal_writes) else 0,
        "stream_age_secs": stream_ages_secs(service),
        "stale_limit_seconds": service.options.limits.stale_secs,
        "blind": {what: secs > runner.watch.blind_alert_secs for what, secs in runner.blind_secs().items()},
        "trading_state": service.trading.state.value,
        "standby": False,
        **margin_snapshot(runner),
    }


def margin_snapshot(runner: Runner) -> dict[str, Any]:
    """The margin's metrics: headroom per settlement currency, and the levels the bot acts at (those set)."""
    margin = margin_watch_of(runner.watch)
    if margin is None:
        return {"margin_headroom": {}}
    levels = {"margin_warn_headroom": margin.levels.warn,
              "margin_critical_headroom": margin.levels.critical}
    return {"margin_headroom": margin.headroom_by_settle(),
            **({"venue_margin": margin.venue.metrics()} if margin.venue is not None else {}),
            **{name: level for name, level in levels.items() if level is not None}}


def is_alive(runner: Runner) -> bool:
    """The loop is alive: its heartbeat (written at start and by the scheduler's every tick, whether or not
    the exchange and the journal answer: those are readiness's) is fresh."""
    if runner.last_beat is None:
        return False
    return time.time() - runner.last_beat <= heartbeat_max_age_secs(runner.recompute_secs)


async def readiness(runner: Runner) -> tuple[bool, dict[str, Any]]:
    """Ready means able to trade safely now: reconciled, the account read within ACCOUNT_READ_MAX_RECOMPUTES
    recomputes, every watched stream fresh (within DK_STALE_SECS), the last journal write succeeded, the
    database answering a trivial query, and the trader lock held. Returns (ready, {"failing": [names],
    "checks": {name: {"ok": ..., ...}}})."""
    service = runner.service
    stale_secs = service.options.limits.stale_secs
    ages = stream_ages_secs(service)
    stale = sorted(symbol for symbol, age in ages.items() if age > stale_secs)
    account_age = runner.account_read_age_secs()
    account_limit = ACCOUNT_READ_MAX_RECOMPUTES * runner.recompute_secs
    writes = runner.journal_writes
    try:
        await asyncio.wait_for(service.journal.control_state(), DATABASE_CHECK_SECS)
        database_error = ""
    except Exception as exc:
        database_error = str(exc) or type(exc).__name__
    checks: dict[str, dict[str, Any]] = {
        "reconciled": {"ok": runner.reconciled},
        "account_read": {
            "ok": account_age is not None and account_age <= account_limit,
            "age_secs": None if account_age is None else round(account_age, 3),
            "limit_secs": account_limit,
        },
        "streams_fresh": {"ok": bool(ages) and not stale, "stale": stale, "limit_secs": stale_secs},
        "journal_write": {"ok": writes is None or writes.failing_since is None,
                          "error": writes.last_error if writes is not None else ""},
        "database": {"ok": not database_error, "error": database_error},
        "trader_lock": {"ok": service.trading.holds_lock()},
    }
    failing = [name for name, check in checks.items() if not check["ok"]]
    return not failing, {"failing": failing, "checks": checks}




