"""The journal's reads. `SqlJournalReader` is the read side for people (ports.JournalReader: typed rows
for the command line, the HTTP API's views, the daily summary and control; `list_*` give the same rows as
dicts, which the tests read) and holds the reads of the trading loop that `SqlJournal` (ports.Journal) adds
its writes to."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, Table, func, select

from deltakeeper.adapters.journal.engine import JournalConnection, journal_engine
from deltakeeper.adapters.journal.models import (
    control,
    control_events,
    decisions,
    fills,
    funding_payments,
    orders,
    snapshots,
)
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.journal_rows import (
    ControlEventRow,
    DecisionRow,
    FillRow,
    FundingRow,
    JournalQuery,
    OrderRow,
    SnapshotRow,
    row_dict,
)
from deltakeeper.domain.orders import FillKind, OrderStatus, OrderType, Side
from deltakeeper.domain.records import ControlState, OrderRecord

OPEN_STATUSES = tuple(status.value for status in OrderStatus if not status.is_final)
EVERY_ROW = JournalQuery()


def open_reader(database_url: str) -> SqlJournalReader:
    """The read side of the journal at `database_url` (an upgraded database), with no bound on a read's
    time: for the command line."""
    return SqlJournalReader(journal_engine(database_url))


class SqlJournalReader(JournalConnection):
    """The journal's reads on SQLite or PostgreSQL (ports.JournalReader, and the trading loop's)."""

    async def open_orders(self) -> list[OrderRecord]:
        """Orders whose final state the journal does not know yet (pending, open, partially filled,
        unknown), oldest first."""
        query = (select(orders).where(orders.c.status.in_(OPEN_STATUSES))
                 .order_by(orders.c.created_ts, orders.c.id))
        async with self._bounded("open orders"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_order_record(row) for row in rows]

    async def unknown_client_ids(self, client_order_ids: Collection[str]) -> set[str]:
        """Those of `client_order_ids` that no order of the journal carries."""
        wanted = set(client_order_ids)
        if not wanted:
            return set()
        query = select(orders.c.client_order_id).where(orders.c.client_order_id.in_(sorted(wanted)))
        async with self._bounded("read"), self._engine.connect() as conn:
            known = set((await conn.execute(query)).scalars())
        return wanted - known

    async def last_fill_ts(self) -> datetime | None:
        return await self._scalar(select(func.max(fills.c.ts)))

    async def last_funding_ts(self) -> datetime | None:
        return await self._scalar(select(func.max(funding_payments.c.ts)))

    async def traded_usd_since(self, since: datetime) -> Decimal:
        """The notional of the trades (fills of kind `trade`: no liquidation or delivery) at or after
        `since`, in USD.

        PostgreSQL sums NUMERIC exactly; SQLite would sum the text as floats, so there the amounts are
        added up here.
        """
        traded = (fills.c.ts >= since) & (fills.c.kind == FillKind.TRADE.value)
        if self._engine.dialect.name == "postgresql":
            total = await self._scalar(select(func.sum(fills.c.notional_usd)).where(traded))
            return total if total is not None else Decimal(0)
        async with self._bounded("traded"), self._engine.connect() as conn:
            amounts = (await conn.execute(select(fills.c.notional_usd).where(traded))).scalars()
            return sum(amounts, Decimal(0))

    async def control_state(self) -> ControlState:
        """The operator's word; not halted when nobody has spoken yet."""
        async with self._bounded("control state"), self._engine.connect() as conn:
            row = (await conn.execute(select(control).where(control.c.id == 1))).first()
        if row is None:
            return ControlState(halted=False)
        return ControlState(halted=row.halted, reason=row.reason, by=row.by, ts=row.ts, extra=dict(row.extra))

    async def _scalar(self, query: Select[Any]) -> Any:
        async with self._bounded("read"), self._engine.connect() as conn:
            return await conn.scalar(query)

    # -- reads for people (ports.JournalReader) --------------------------------------------------

    async def fills(self, query: JournalQuery = EVERY_ROW) -> list[FillRow]:
        return [FillRow(**row) for row in await self._select(fills, fills.c.ts, query)]

    async def funding(self, query: JournalQuery = EVERY_ROW) -> list[FundingRow]:
        rows = await self._select(funding_payments, funding_payments.c.ts, query)
        return [FundingRow(**row) for row in rows]

    async def orders(self, query: JournalQuery = EVERY_ROW) -> list[OrderRow]:
        return [OrderRow(**row) for row in await self._select(orders, orders.c.created_ts, query)]

    async def decisions(self, query: JournalQuery = EVERY_ROW) -> list[DecisionRow]:
        return [DecisionRow(**row) for row in await self._select(decisions, decisions.c.ts, query)]

    async def control_events(self, query: JournalQuery = EVERY_ROW) -> list[ControlEventRow]:
        rows = await self._select(control_events, control_events.c.ts, query)
        return [ControlEventRow(**row) for row in rows]

    async def latest_snapshots(self) -> list[SnapshotRow]:
        """Per asset its latest snapshot, in the order they were journaled."""
        latest = select(func.max(snapshots.c.id)).group_by(snapshots.c.asset)
        query = select(snapshots).where(snapshots.c.id.in_(latest)).order_by(snapshots.c.id)
        return [SnapshotRow(**row) for row in await self._rows(query)]

    async def latest_decisions(self, before: datetime | None = None, asset: str | None = None
                               ) -> list[DecisionRow]:
        """Per asset its latest decision (before `before`, exclusive; only `asset`'s), in the order they
        were journaled; one query however many decisions there are."""
        latest = select(func.max(decisions.c.id)).group_by(decisions.c.asset)
        if before is not None:
            latest = latest.where(decisions.c.ts < before)
        query = select(decisions).where(decisions.c.id.in_(latest)).order_by(decisions.c.id)
        if asset is not None:
            query = query.where(decisions.c.asset == asset.upper())
        return [DecisionRow(**row) for row in await self._rows(query)]

    # The same rows as dicts keyed by column, filters as JournalQuery's fields: no part of the bot reads
    # them (it reads the typed rows); the tests compare journaled rows with them.

    async def list_fills(self, **filters: Any) -> list[dict[str, Any]]:
        return [row_dict(row) for row in await self.fills(JournalQuery(**filters))]

    async def list_funding(self, **filters: Any) -> list[dict[str, Any]]:
        return [row_dict(row) for row in await self.funding(JournalQuery(**filters))]

    async def list_orders(self, **filters: Any) -> list[dict[str, Any]]:
        return [row_dict(row) for row in await self.orders(JournalQuery(**filters))]

    async def list_decisions(self, **filters: Any) -> list[dict[str, Any]]:
        return [row_dict(row) for row in await self.decisions(JournalQuery(**filters))]

    async def list_control_events(self, **filters: Any) -> list[dict[str, Any]]:
        """Halts, resumes and cancel-all requests: who, why, when."""
        return [row_dict(row) for row in await self.control_events(JournalQuery(**filters))]

    async def _select(self, table: Table, time_column: ColumnElement[datetime], filters: JournalQuery
                      ) -> list[dict[str, Any]]:
        query = select(table).order_by(time_column, table.c.id).limit(filters.limit).offset(filters.offset)
        if filters.since is not None:
            query = query.where(time_column >= filters.since)
        if filters.until is not None:
            query = query.where(time_column < filters.until)
        if filters.symbol is not None:
            query = query.where(_filtered_column(table, "symbol", filters.symbol) == filters.symbol)
        if filters.side is not None:
            query = query.where(_filtered_column(table, "side", filters.side) == _side(filters.side).value)
        if filters.asset is not None:
            asset = filters.asset.upper()
            if "asset" in table.c:
                query = query.where(table.c.asset == asset)
            else:
                symbol = _filtered_column(table, "asset", asset)
                query = query.where(symbol.startswith(f"{asset}/", autoescape=True))
        return await self._rows(query)

    async def _rows(self, query: Select[Any]) -> list[dict[str, Any]]:
        async with self._bounded("read"), self._engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]


def _filtered_column(table: Table, name: str, value: object) -> ColumnElement[Any]:
    """The column a filter applies to: `name`, or for an asset filter the symbol it is the base of."""
    column = "symbol" if name == "asset" else name
    if column not in table.c:
        raise ConfigError(name, f"no {name} filter for {table.name}", value)
    return table.c[column]


def _side(value: str) -> Side:
    try:
        return Side(value)
    except ValueError:
        raise ConfigError("side", "buy or sell", value) from None


def _order_record(row: Row[Any]) -> OrderRecord:
    return OrderRecord(
        client_order_id=row.client_order_id,
        decision_id=row.decision_id,
        symbol=row.symbol,
        side=Side(row.side),
        amount_contracts=row.amount_contracts,
        order_type=OrderType(row.order_type),
        status=OrderStatus(row.status),
        created_ts=row.created_ts,
        price=row.price,
        reduce_only=row.reduce_only,
        exchange_order_id=row.exchange_order_id,
        filled_contracts=row.filled_contracts,
        average_price=row.average_price,
        reject_reason=row.reject_reason,
        reference_price=row.reference_price,
        asset=row.asset,
    )
