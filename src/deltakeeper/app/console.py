"""The web console's reads (today's costs, recent alerts, the newest journal rows) and the JSON API's
journal pages."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from deltakeeper.app.figures import coins, sum_known, usd
from deltakeeper.domain.durations import parse_time
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.journal_rows import JournalQuery, JournalRow
from deltakeeper.domain.usd import PriceUsd, to_usd
from deltakeeper.ports import Alerts, JournalReader

JOURNAL_FILTERS = ("since", "until", "symbol", "side", "asset", "limit", "offset")
JOURNAL_PAGE_ROWS = 500
"""Rows of a journal API page when the request gives no `limit`."""
JOURNAL_PAGE_MAX_ROWS = 5000
"""The largest `limit` of a journal API page: a page is read and sent while the bot trades."""


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
        fees_usd = sum_known(v["usd"] for v in fees.values())
        funding_usd = sum_known(v["usd"] for v in funding.values())
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


JournalPage = tuple[Sequence[JournalRow], dict[str, str] | None]
"""A page of rows (typed: JSON is made of them at the HTTP edge, `jsonable.plain`) and the query
parameters of the next page (None on the last)."""
JOURNAL_READS: dict[str, Callable[[JournalReader, JournalQuery], Awaitable[Sequence[JournalRow]]]] = {
    "fills": lambda reader, query: reader.fills(query),
    "funding": lambda reader, query: reader.funding(query),
    "orders": lambda reader, query: reader.orders(query),
    "decisions": lambda reader, query: reader.decisions(query),
}
"""The journal views, each a read of the JournalReader port."""


def journal_api(reader: JournalReader) -> Callable[[str, dict[str, str]], Awaitable[JournalPage]]:
    """The JSON API's journal views (`JOURNAL_READS`) over the JournalReader port. Query parameters:
    since, until (a duration back from now such as 7d, or an ISO-8601 time), symbol, side, asset, limit
    (rows per page: JOURNAL_PAGE_ROWS unless given, at most JOURNAL_PAGE_MAX_ROWS), offset. The next
    page's parameters carry `since` and `until` as the times this page resolved them to, so that a window
    such as 7d does not move between pages. A bad parameter raises ValueError or ConfigError (HTTP
    400)."""

    async def read(view: str, query: dict[str, str]) -> JournalPage:
        if view not in JOURNAL_READS:
            raise ValueError(f"unknown journal view {view!r}")
        unknown = sorted(set(query) - set(JOURNAL_FILTERS))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}: one of {', '.join(JOURNAL_FILTERS)}")
        filters = parse_filters(query, datetime.now(UTC))
        limit = filters.pop("limit", JOURNAL_PAGE_ROWS)
        if not 1 <= limit <= JOURNAL_PAGE_MAX_ROWS:
            raise ConfigError("limit", f"a whole number from 1 to {JOURNAL_PAGE_MAX_ROWS}", query["limit"])
        offset = filters.pop("offset", 0)
        # one more row than the page: is there a next page?
        rows = await JOURNAL_READS[view](reader, JournalQuery(**filters, limit=limit + 1, offset=offset))
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
