"""The console's reads of the journal: bounded whatever the journal's size. The newest rows of a table
(optionally only those after a row the page has already seen), and the day's fees and funding summed by
the database, per currency. Every read is one indexed query that returns at most `limit` rows or one row
per currency."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, select

from deltakeeper.adapters.journal.models import decisions, fills, funding_payments, orders
from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.domain.orders import FillKind

RECENT_TABLES: dict[str, Table] = {
    "fills": fills,
    "orders": orders,
    "decisions": decisions,
    "funding": funding_payments,
}


class ConsoleReads:
    """The reads behind the console's endpoints, over the bot's journal."""

    def __init__(self, journal: SqlJournal) -> None:
        self.journal = journal

    async def recent(
        self, view: str, limit: int, after_id: int | None = None, asset: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest `limit` rows of `view` (fills|orders|decisions|funding), oldest first; with
        `after_id` the oldest `limit` rows journaled after that one (by the row's `id`), so that a page
        that has seen row N and pages on with the last id it got reads every new row; with `asset` only
        that asset's rows (decisions and orders)."""
        table = RECENT_TABLES[view]
        if after_id is None:
            query = select(table).order_by(table.c.id.desc()).limit(limit)
        else:
            query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
        if asset is not None:
            if "asset" not in table.c:
                raise ValueError(f"no asset filter for {view}")
            query = query.where(table.c.asset == asset.upper())
        async with self.journal.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        oldest_first = rows if after_id is not None else list(reversed(rows))
        return [dict(row._mapping) for row in oldest_first]

    async def costs_since(self, since: datetime) -> dict[str, Any]:
        """Trades (fills of kind `trade`) and their notional, every fill's fees, and funding payments at or
        after `since`, summed by the database per currency: {"fills": trades, "traded_usd": x, "fees":
        {currency: {"count", "amount"}}, "funding": {currency: {"count", "amount"}}} (amounts in their own
        currency, received funding positive). SQLite sums its decimal text as binary floats: exact to far
        below a cent at these sizes."""
        fee_query = (
            select(fills.c.fee_currency, func.count(), func.sum(fills.c.fee))
            .where(fills.c.ts >= since)
            .group_by(fills.c.fee_currency)
        )
        traded_query = (  # trades only: a liquidation or a delivery is the exchange's close, not our trading
            select(func.count(), func.sum(fills.c.notional_usd))
            .where((fills.c.ts >= since) & (fills.c.kind == FillKind.TRADE.value))
        )
        funding_query = (
            select(funding_payments.c.currency, func.count(), func.sum(funding_payments.c.amount))
            .where(funding_payments.c.ts >= since)
            .group_by(funding_payments.c.currency)
        )
        async with self.journal.engine.connect() as conn:
            fee_rows = (await conn.execute(fee_query)).all()
            trade_count, traded_notional = (await conn.execute(traded_query)).one()
            funding_rows = (await conn.execute(funding_query)).all()
        return {
            "fills": int(trade_count),
            "traded_usd": _decimal(traded_notional),
            "fees": {currency: {"count": int(count), "amount": _decimal(total)}
                     for currency, count, total in fee_rows},
            "funding": {currency: {"count": int(count), "amount": _decimal(total)}
                        for currency, count, total in funding_rows},
        }


def _decimal(value: Any) -> Decimal:
    """A database sum as a Decimal: NUMERIC on PostgreSQL, a float (or NULL for no rows) on SQLite."""
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))
