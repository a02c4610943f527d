"""The running bot's state at a glance, for the HTTP API (`/api/status`, `/metrics`, the probes) and
`deltakeeper status`: plain dicts built from the Runner and its Service, never from the exchange."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from deltakeeper.app.margin_watch import margin_watch_of
from deltakeeper.app.runner import ACCOUNT_READ_MAX_RECOMPUTES, Runner
from deltakeeper.app.service import Service
from deltakeeper.domain.durations import parse_time
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.instruments import STABLECOINS
from deltakeeper.domain.usd import PriceUsd, to_usd
from deltakeeper.ports import Alerts

JOURNAL_VIEWS = ("fills", "funding", "orders", "decisions")
JOURNAL_FILTERS = ("since", "until", "symbol", "side", "asset", "limit", "offset")
DATABASE_CHECK_SECS = 5.0
JOURNAL_PAGE_ROWS = 500
"""Rows of a journal API page when the request gives no `limit`."""
JOURNAL_PAGE_MAX_ROWS = 5000
"""The largest `limit` of a journal API page: a page is read and sent while the bot trades."""


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
        "hedge_unrealised_pnl_usd": _sum_known(p["unrealised_pnl_usd"] for p in positions),
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


CENT = Decimal("0.01")
COIN_STEP = Decimal("1e-8")
RATIO_PLACES = 4


def usd(value: Decimal | None) -> Decimal | None:
    """USD to the cent."""
    return None if value is None else value.quantize(CENT, ROUND_HALF_EVEN)


def coins(value: Decimal | None, step: Decimal = COIN_STEP) -> Decimal | None:
    """An amount of coin or contracts to `step` (8 places unless the instrument's lot step is given)."""
    if value is None or not value.is_finite():
        return value
    return value.quantize(step.normalize() if step < 1 else Decimal(1), ROUND_HALF_EVEN)


def ratio(value: float | Decimal | None) -> float | None:
    """A ratio (a deviation in bands, a headroom) to 4 places; infinite ones as they are."""
    if value is None:
        return None
    number = float(value)
    return round(number, RATIO_PLACES) if math.isfinite(number) else number


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
                            "liquidation_move"})
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


def _sum_known(values: Any) -> Decimal | None:
    """The sum of the values, None when any is unknown (a sum with a hole is no answer)."""
    total = Decimal(0)
    for value in values:
        if value is None:
            return None
        total += value
    return total


RECENT_ALERTS = 50
"""Alerts the console shows: the newest this many since the service started."""


class RecentAlerts:
    """The Alerts port: every alert goes on to `inner`, and the newest RECENT_ALERTS are kept for the
    console (whatever the delivery: the level filter and cool-down of the channels apply after)."""

    def __init__(self, inner: Alerts, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.inner = inner
        self.now = now
        self.sent: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.sent.append({"ts": self.now(), "level": level, "event": event, "message": message,
                          "subject": subject})
        await self.inner.send(level, event, message, subject)

    def recent(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self.sent))


class ConsoleReader(Protocol):
    """The journal reads of the console (`adapters.journal.console.ConsoleReads`)."""

    async def recent(self, view: str, limit: int, after_id: int | None = None, asset: str | None = None
                     ) -> list[dict[str, Any]]: ...

    async def costs_since(self, since: datetime) -> dict[str, Any]: ...


CONSOLE_VIEWS = ("fills", "orders", "decisions", "funding")
CONSOLE_ROWS = 50
"""Rows of a console read when the request gives no `limit`."""
CONSOLE_MAX_ROWS = 2000
"""The most rows one console read returns: the chart's window of decisions per asset."""


class Console:
    """The console's reads: `summary()` (today's costs per currency and in USD, the recent alerts) and
    `recent(view, query)` (the newest rows of a journal table, incremental with `after_id`)."""

    def __init__(self, now: Callable[[], datetime], price_usd: PriceUsd, reader: ConsoleReader,
                 alerts: RecentAlerts | None) -> None:
        self.now = now
        """The exchange's time (the day of `summary` is the exchange's)."""
        self.price_usd = price_usd
        self.reader = reader
        self.alerts = alerts

    async def summary(self) -> dict[str, Any]:
        """Since 00:00 UTC of the exchange's day: fills, notional traded, fees and funding per currency
        with their USD value at the coin's price now, and the totals in USD (None while a currency has
        no price: it is listed in `unpriced`). Funding received is positive, fees paid positive."""
        since = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
        costs = await self.reader.costs_since(since)
        unpriced: set[str] = set()

        def by_currency(sums: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
            views = {}
            for currency, row in sorted(sums.items()):
                in_usd = to_usd(row["amount"], currency, self.price_usd)
                if in_usd is None:
                    unpriced.add(currency)
                views[currency] = {"count": row["count"], "amount": coins(row["amount"]), "usd": usd(in_usd)}
            return views

        fees = by_currency(costs["fees"])
        funding = by_currency(costs["funding"])
        fees_usd = _sum_known(v["usd"] for v in fees.values())
        funding_usd = _sum_known(v["usd"] for v in funding.values())
        return {
            "since": since,
            "fills": costs["fills"],
            "traded_usd": usd(costs["traded_usd"]),
            "fees": fees,
            "fees_usd": fees_usd,
            "funding": funding,
            "funding_usd": funding_usd,
            "unpriced": sorted(unpriced),
            "alerts": self.alerts.recent() if self.alerts is not None else [],
        }

    async def recent(self, view: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Query parameters: limit (CONSOLE_ROWS unless given, at most CONSOLE_MAX_ROWS), after_id (only
        rows after that one), asset. A bad parameter raises ValueError or ConfigError (HTTP 400)."""
        if view not in CONSOLE_VIEWS:
            raise ValueError(f"unknown view {view!r}")
        unknown = sorted(set(query) - {"limit", "after_id", "asset"})
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}: one of limit, after_id, asset")
        limit = _whole(query, "limit", CONSOLE_ROWS)
        if not 1 <= limit <= CONSOLE_MAX_ROWS:
            raise ConfigError("limit", f"a whole number from 1 to {CONSOLE_MAX_ROWS}", query["limit"])
        after_id = _whole(query, "after_id", None) if query.get("after_id") else None
        return await self.reader.recent(view, limit, after_id, query.get("asset") or None)


def _whole(query: Mapping[str, str], name: str, default: Any) -> Any:
    if not query.get(name):
        return default
    try:
        value = int(query[name])
    except ValueError:
        raise ConfigError(name, "a whole number", query[name]) from None
    if value < 0:
        raise ConfigError(name, "a whole number, 0 or more", query[name])
    return value


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
    levels = {"margin_warn_headroom": margin.warn_headroom,
              "margin_critical_headroom": margin.critical_headroom}
    return {"margin_headroom": margin.headroom_by_settle(),
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


ListRows = Callable[..., Awaitable[list[dict[str, Any]]]]


JournalPage = tuple[list[dict[str, Any]], dict[str, str] | None]
"""A page of rows and the query parameters of the next page (None on the last)."""


def journal_api(reader: object) -> Callable[[str, dict[str, str]], Awaitable[JournalPage]]:
    """The JSON API's journal views over a reader with `list_fills|funding|orders|decisions(**filters)`.
    Query parameters: since, until (a duration back from now such as 7d, or an ISO-8601 time), symbol,
    side, asset, limit (rows per page: JOURNAL_PAGE_ROWS unless given, at most JOURNAL_PAGE_MAX_ROWS),
    offset. The next page's parameters carry `since` and `until` as the times this page resolved them to,
    so that a window such as 7d does not move between pages. A bad parameter raises ValueError or
    ConfigError (HTTP 400)."""

    async def read(view: str, query: dict[str, str]) -> JournalPage:
        if view not in JOURNAL_VIEWS:
            raise ValueError(f"unknown journal view {view!r}")
        unknown = sorted(set(query) - set(JOURNAL_FILTERS))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}: one of {', '.join(JOURNAL_FILTERS)}")
        filters = parse_filters(query, datetime.now(UTC))
        limit = filters.pop("limit", JOURNAL_PAGE_ROWS)
        if not 1 <= limit <= JOURNAL_PAGE_MAX_ROWS:
            raise ConfigError("limit", f"a whole number from 1 to {JOURNAL_PAGE_MAX_ROWS}", query["limit"])
        offset = filters.pop("offset", 0)
        list_rows: ListRows = getattr(reader, f"list_{view}")
        rows = await list_rows(**filters, limit=limit + 1, offset=offset)  # one more: is there a next page?
        if len(rows) <= limit:
            return rows, None
        resolved: dict[str, str] = {n: filters[n].isoformat() for n in ("since", "until") if n in filters}
        return rows[:limit], {**query, **resolved, "limit": str(limit), "offset": str(offset + limit)}

    return read


def parse_filters(query: Mapping[str, str], now: datetime) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for name in ("since", "until"):
        if query.get(name):
            filters[name] = parse_time(query[name], name, now)
    for name in ("symbol", "side", "asset"):
        if query.get(name):
            filters[name] = query[name]
    for name in ("limit", "offset"):
        if query.get(name):
            filters[name] = _whole(query, name, None)
    return filters
