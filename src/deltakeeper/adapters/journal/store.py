"""`SqlJournal`: the Journal port over SQLAlchemy Core (async), the CLI's read queries, the trader lock.

Writes are Core statements and no ORM objects. Fills and funding payments are insert-or-ignore on the
exchange's ids, which makes ingestion idempotent. The hottest writes skip SQLAlchemy's statement
machinery and go to the driver as statements prepared once (`_InsertNew`): fills and funding (every fill,
and backfills of thousands: on SQLite one `executemany` and the commit, on PostgreSQL one round trip
however many rows, on a connection the journal keeps for it), and a decision with the order it is about
to send (on the path from a tick to that order). Either way a call is one transaction, committed before
it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy import ColumnElement, Dialect, Row, Select, Table, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from deltakeeper.adapters.journal.migrate import normalise_url, sqlite_file
from deltakeeper.adapters.journal.models import (
    control,
    control_events,
    decisions,
    fills,
    funding_payments,
    orders,
    snapshots,
)
from deltakeeper.domain.errors import ConfigError, ForeignOrder, JournalUnavailable
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderState,
    OrderStatus,
    OrderType,
    Side,
    is_ours,
)
from deltakeeper.domain.records import ControlState, DecisionRecord, OrderRecord

OPEN_STATUSES = tuple(status.value for status in OrderStatus if not status.is_final)
FINAL_STATUSES = tuple(status.value for status in OrderStatus if status.is_final)
TRADER_LOCK_KEY = int.from_bytes(b"dktrader", "big", signed=True)
"""The PostgreSQL advisory lock key held by the one active trader of a database."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITER_RECYCLE_SECS = 1800.0
"""The PostgreSQL pool's `pool_recycle`, which also renews the journal's writer connection."""
LOCK_POLL_SECS = 1.0
"""How often a standby tries the trader lock, and the holder of a PostgreSQL lock checks it still has it."""
LOCK_CHECK_TIMEOUT_SECS = 5.0
"""A check of the PostgreSQL trader lock not answered within this long loses the lock."""

log = structlog.get_logger("deltakeeper.journal")


def _now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    """WAL lets a CLI reader and the bot share the file; the busy timeout makes writers wait their turn,
    and a writer that waits longer gives up (SQLITE_BUSY)."""

    def on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return on_connect


def create_journal(database_url: str, timeout_secs: float | None = None) -> SqlJournal:
    """A journal over an upgraded database (see `migrate.upgrade`); `postgresql://` and `sqlite:///`
    URLs are mapped to their async drivers.

    SQLite gets one connection: its writes are serialised anyway, and a single connection means no
    read-then-write transaction in this process ever finds its snapshot overtaken by another.

    `timeout_secs` (the service's DK_JOURNAL_TIMEOUT_SECS; None for the CLI's reads, unbounded): a journal
    call not done within it raises JournalUnavailable, and the database stops the statement too: on
    PostgreSQL the session's `statement_timeout` and the driver's command timeout (which cancels the
    query on the server), on SQLite the busy timeout (a write waiting on another's lock gives up).
    """
    url = normalise_url(database_url)
    if make_url(url).get_backend_name() == "sqlite":
        # No rollback when the connection goes back to the pool: every Connection ends its own
        # transaction on close (a commit in `begin()`, else a rollback), and `_InsertNew` commits or rolls
        # back its own; on aiosqlite the reset would be one more hop to the connection's thread per write.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_reset_on_return=None)
        busy_ms = SQLITE_BUSY_TIMEOUT_MS if timeout_secs is None else max(1, round(timeout_secs * 1000))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_ms))
    else:
        bounds: dict[str, Any] = {}
        if timeout_secs is not None:
            statement_ms = str(max(1, round(timeout_secs * 1000)))
            bounds = {"timeout": timeout_secs, "command_timeout": timeout_secs,
                      "server_settings": {"statement_timeout": statement_ms}}
        engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_recycle=WRITER_RECYCLE_SECS,
                                     connect_args=bounds)
    return SqlJournal(engine, timeout_secs)


class SqlJournal:
    """The journal (ports.Journal) on SQLite or PostgreSQL, plus the queries the CLI reads."""

    def __init__(self, engine: AsyncEngine, timeout_secs: float | None = None) -> None:
        self._engine = engine
        self._timeout_secs = timeout_secs
        self._postgresql = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgresql else sqlite.insert
        self._new_fills = _InsertNew(fills, ("symbol", "trade_id"), engine.dialect)
        self._new_funding = _InsertNew(funding_payments, ("payment_id",), engine.dialect)
        self._new_decisions = _InsertNew(decisions, ("decision_id",), engine.dialect)
        # An order is inserted, or replaced by client order id unless the row is in a final state.
        self._order_upserts = _InsertNew(
            orders, ("client_order_id",), engine.dialect,
            update=[column.name for column in orders.columns
                    if column.name not in ("id", "client_order_id", "updated_ts")],
            where=orders.c.status.not_in(FINAL_STATUSES),
        )
        self._writer: AsyncConnection | None = None
        self._writer_driver: Any = None
        self._writer_since = 0.0
        self._writer_busy = False

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._drop_writer(invalidate=False)
        await self._engine.dispose()

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Run the block within the journal's timeout, else raise JournalUnavailable. A call cut short
        leaves nothing behind: its transaction is rolled back, or its connection dropped (the writer's,
        see `_run_on_writer`), and the database has stopped the statement itself (see `create_journal`)."""
        if self._timeout_secs is None:
            yield
            return
        try:
            async with asyncio.timeout(self._timeout_secs):
                yield
        except TimeoutError as exc:
            raise JournalUnavailable(f"journal {what}: no answer within {self._timeout_secs} s") from exc
        except DBAPIError as exc:
            if not _timed_out(exc):
                raise
            raise JournalUnavailable(f"journal {what}: no answer within {self._timeout_secs} s "
                                     f"({exc.orig})") from exc

    # -- writes ---------------------------------------------------------------------------------

    async def record_decision(
        self, decision: DecisionRecord, pending_order: OrderRecord | None = None
    ) -> None:
        """Store a decision, and the order it is about to send, in one transaction (one commit before the
        order leaves); recording the same decision id again is a no-op."""
        recorded_at = _now()
        writes = [(self._new_decisions, [self._decision_row(decision, recorded_at)])]
        if pending_order is not None:
            writes.append((self._order_upserts, [self._order_row(pending_order, recorded_at)]))
        await self._write(writes)

    @staticmethod
    def _decision_row(decision: DecisionRecord, recorded_at: datetime) -> dict[str, Any]:
        return {
            "decision_id": decision.decision_id,
            "ts": decision.ts,
            "asset": decision.asset,
            "delta_coin": decision.delta_coin,
            "delta_usd": decision.delta_usd,
            "target_coin": decision.target_coin,
            "band_coin": decision.band_coin,
            "price_usd": decision.price_usd,
            "reason": decision.reason,
            "trading_state": decision.trading_state,
            "symbol": decision.symbol,
            "side": decision.side.value if decision.side is not None else None,
            "amount_contracts": decision.amount_contracts,
            "est_cost_usd": decision.est_cost_usd,
            "detail": decision.detail,
            "recorded_at": recorded_at,
        }

    async def record_order(self, order: OrderRecord) -> None:
        """Insert an order, or replace its state by client order id. A row already in a final state
        (filled, canceled, rejected) is left as it is."""
        await self._write([(self._order_upserts, [self._order_row(order, _now())])])

    @staticmethod
    def _order_row(order: OrderRecord, recorded_at: datetime) -> dict[str, Any]:
        return {
            "client_order_id": order.client_order_id,
            "decision_id": order.decision_id,
            "exchange_order_id": order.exchange_order_id,
            "symbol": order.symbol,
            "asset": order.asset,
            "side": order.side.value,
            "order_type": order.order_type.value,
            "amount_contracts": order.amount_contracts,
            "price": order.price,
            "reference_price": order.reference_price,
            "reduce_only": order.reduce_only,
            "status": order.status.value,
            "filled_contracts": order.filled_contracts,
            "average_price": order.average_price,
            "reject_reason": order.reject_reason,
            "created_ts": order.created_ts,
            "updated_ts": order.created_ts,
            "recorded_at": recorded_at,
        }

    async def update_order(self, state: OrderState) -> None:
        """Apply the exchange's view of an order, found by client order id, else exchange order id.

        Stale updates are ignored: a final status never moves back to a non-final one, and the filled
        amount never shrinks. An order the journal does not know is not journaled: placed by someone else
        on the account, it is not ours; with our client-id prefix (`dk`), which every order we send is
        journaled with before it leaves, another trader is on the account: ForeignOrder is raised.
        """
        async with self._bounded("order update"), self._engine.begin() as conn:
            found = await self._find_order(conn, state)
            if found is None:
                if is_ours(state.client_order_id):
                    raise ForeignOrder(str(state.client_order_id), state.symbol)
                return
            order_id, status, filled_contracts = found
            if (status.is_final and not state.status.is_final) or state.filled_contracts < filled_contracts:
                return
            changes: dict[str, Any] = {
                "status": state.status.value,
                "filled_contracts": state.filled_contracts,
                "updated_ts": state.ts,
                "recorded_at": _now(),
            }
            if state.exchange_order_id:
                changes["exchange_order_id"] = state.exchange_order_id
            if state.average_price is not None:
                changes["average_price"] = state.average_price
            if state.reject_reason is not None:
                changes["reject_reason"] = state.reject_reason
            await conn.execute(orders.update().where(orders.c.id == order_id).values(changes))

    async def _find_order(self, conn: AsyncConnection, state: OrderState
                          ) -> tuple[int, OrderStatus, Decimal] | None:
        """The row id, status and filled amount of the order `state` describes, locked for update."""
        keys = ((orders.c.client_order_id, state.client_order_id),
                (orders.c.exchange_order_id, state.exchange_order_id))
        for column, value in keys:
            if value:
                query = (select(orders.c.id, orders.c.status, orders.c.filled_contracts)
                         .where(column == value).with_for_update())
                row = (await conn.execute(query)).first()
                if row is not None:
                    return row.id, OrderStatus(row.status), row.filled_contracts
        return None

    async def record_fills(self, new_fills: Sequence[Fill]) -> int:
        """Store fills once each (unique on symbol and trade id), in one transaction; returns how many
        were new."""
        recorded_at = _now()
        rows = [
            {
                "trade_id": fill.trade_id,
                "exchange_order_id": fill.exchange_order_id,
                "client_order_id": fill.client_order_id,
                "symbol": fill.symbol,
                "side": fill.side.value,
                "amount_contracts": fill.amount_contracts,
                "price": fill.price,
                "fee": fill.fee,
                "fee_currency": fill.fee_currency,
                "notional_usd": fill.notional_usd,
                "is_maker": fill.is_maker,
                "ts": fill.ts,
                "recorded_at": recorded_at,
            }
            for fill in new_fills
        ]
        return await self._insert_new(self._new_fills, rows)

    async def record_funding(self, payments: Sequence[FundingPayment]) -> int:
        """Store payments once each (unique on payment id), in one transaction; returns how many were
        new."""
        recorded_at = _now()
        rows = [
            {
                "payment_id": payment.payment_id,
                "symbol": payment.symbol,
                "amount": payment.amount,
                "currency": payment.currency,
                "rate": payment.rate,
                "position_contracts": payment.position_contracts,
                "ts": payment.ts,
                "recorded_at": recorded_at,
            }
            for payment in payments
        ]
        return await self._insert_new(self._new_funding, rows)

    async def _insert_new(self, insert: _InsertNew, rows: list[dict[str, Any]]) -> int:
        """Insert-or-ignore `rows` in one transaction, committed on return; how many were new."""
        if not rows:
            return 0
        [added] = await self._write([(insert, rows)])
        return added

    async def _write(self, writes: list[tuple[_InsertNew, list[dict[str, Any]]]]) -> list[int]:
        """Run each statement on its rows, all in one transaction committed on return; how many rows
        each added (or, for an upsert, changed). Every value is bound before anything is written."""
        bound = [(insert, insert.bind(rows)) for insert, rows in writes]
        async with self._bounded("write"):
            if self._postgresql and not self._writer_busy:
                self._writer_busy = True
                try:
                    return await self._run_on_writer(bound)
                finally:
                    self._writer_busy = False
            async with self._engine.connect() as conn:
                driver: Any = (await conn.get_raw_connection()).driver_connection
                return await self._run(driver, bound)

    async def _run(self, driver: Any, bound: list[tuple[_InsertNew, list[list[Any]]]]) -> list[int]:
        """Run bound statements on the driver's connection in one transaction. PostgreSQL: one statement
        is its own transaction (see `_InsertNew`), several are wrapped in one; SQLite: the driver's
        implicit transaction, committed or rolled back here."""
        if self._postgresql:
            if len(bound) == 1:
                insert, columns = bound[0]
                return [await insert.run(driver, columns)]
            async with driver.transaction():
                return [await insert.run(driver, columns) for insert, columns in bound]
        try:
            changed = [await insert.run(driver, columns) for insert, columns in bound]
            await driver.commit()
        except BaseException:
            await driver.rollback()
            raise
        return changed

    async def _run_on_writer(self, bound: list[tuple[_InsertNew, list[list[Any]]]]) -> list[int]:
        """PostgreSQL: run on the journal's writer, a pooled connection kept checked out between calls
        (taking one from the pool and giving it back costs as much again as the insert). A call that
        finds it busy takes a connection from the pool instead. It is renewed after `pool_recycle`, and
        dropped, not reused, after any error or cancellation on it."""
        if self._writer is not None and time.monotonic() - self._writer_since > WRITER_RECYCLE_SECS:
            await self._drop_writer(invalidate=False)
        if self._writer is None:
            conn = await self._engine.connect()
            try:
                self._writer_driver = (await conn.get_raw_connection()).driver_connection
            except BaseException:
                await conn.close()
                raise
            self._writer, self._writer_since = conn, time.monotonic()
        try:
            return await self._run(self._writer_driver, bound)
        except BaseException:
            await self._drop_writer(invalidate=True)
            raise

    async def _drop_writer(self, invalidate: bool) -> None:
        writer, self._writer, self._writer_driver = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                if invalidate:
                    await writer.invalidate()
                await writer.close()

    async def record_snapshot(
        self, ts: datetime, deltas: Mapping[str, AssetDelta], trading_state: str
    ) -> None:
        recorded_at = _now()
        rows = [
            {
                "ts": ts,
                "asset": delta.asset,
                "delta_coin": delta.delta_coin,
                "delta_usd": delta.delta_usd,
                "gross_coin": delta.gross_coin,
                "trading_state": trading_state,
                "recorded_at": recorded_at,
            }
            for delta in deltas.values()
        ]
        if rows:
            async with self._bounded("snapshot"), self._engine.begin() as conn:
                await conn.execute(snapshots.insert(), rows)

    async def set_control_state(self, state: ControlState) -> None:
        """Write the operator's word and journal it as a `halt` or `resume` event (who, why, when:
        `state.ts`, or now when it has none)."""
        ts = state.ts or _now()
        row = {"id": 1, "halted": state.halted, "reason": state.reason, "by": state.by, "ts": ts,
               "extra": dict(state.extra)}
        insert = self._insert(control).values(row)
        upsert = insert.on_conflict_do_update(
            index_elements=["id"], set_={name: insert.excluded[name] for name in row if name != "id"}
        )
        action = "halt" if state.halted else "resume"
        async with self._bounded("control state"), self._engine.begin() as conn:
            await conn.execute(upsert)
            await conn.execute(control_events.insert().values(ts=ts, action=action, by=state.by,
                                                              reason=state.reason))

    # -- reads for the trading loop -------------------------------------------------------------

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
        """The notional of the fills at or after `since`, in USD.

        PostgreSQL sums NUMERIC exactly; SQLite would sum the text as floats, so there the amounts are
        added up here.
        """
        if self._engine.dialect.name == "postgresql":
            total = await self._scalar(select(func.sum(fills.c.notional_usd)).where(fills.c.ts >= since))
            return total if total is not None else Decimal(0)
        async with self._bounded("traded"), self._engine.connect() as conn:
            amounts = (await conn.execute(select(fills.c.notional_usd).where(fills.c.ts >= since))).scalars()
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

    # -- reads for the CLI ----------------------------------------------------------------------
    #
    # Each returns plain dicts keyed by column name (Decimals, aware UTC datetimes, enum values as
    # strings), oldest first (orders by created_ts); with no filter, every row. `since` is inclusive
    # and `until` exclusive. `asset` matches the asset column where the table has one (orders,
    # decisions), else the base of a unified symbol (`BTC` matches `BTC/USDT:USDT`). A filter the
    # table cannot apply (a side for funding payments) is refused with ConfigError.

    async def list_fills(
        self, *, since: datetime | None = None, until: datetime | None = None, symbol: str | None = None,
        side: Side | str | None = None, asset: str | None = None, limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        filters = _Filters(since, until, symbol, side, asset, limit, offset)
        return await self._list(fills, fills.c.ts, filters)

    async def list_funding(
        self, *, since: datetime | None = None, until: datetime | None = None, symbol: str | None = None,
        side: Side | str | None = None, asset: str | None = None, limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        filters = _Filters(since, until, symbol, side, asset, limit, offset)
        return await self._list(funding_payments, funding_payments.c.ts, filters)

    async def list_orders(
        self, *, since: datetime | None = None, until: datetime | None = None, symbol: str | None = None,
        side: Side | str | None = None, asset: str | None = None, limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        filters = _Filters(since, until, symbol, side, asset, limit, offset)
        return await self._list(orders, orders.c.created_ts, filters)

    async def list_decisions(
        self, *, since: datetime | None = None, until: datetime | None = None, symbol: str | None = None,
        side: Side | str | None = None, asset: str | None = None, limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        filters = _Filters(since, until, symbol, side, asset, limit, offset)
        return await self._list(decisions, decisions.c.ts, filters)

    async def list_control_events(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Halts and resumes: who, why, when."""
        filters = _Filters(since, until, limit=limit, offset=offset)
        return await self._list(control_events, control_events.c.ts, filters)

    async def _list(self, table: Table, time_column: ColumnElement[datetime], filters: _Filters
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
        async with self._bounded("read"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [dict(row._mapping) for row in rows]


_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})
"""PostgreSQL's query_canceled (the statement timeout, a cancel) and lock_not_available."""


def _timed_out(exc: DBAPIError) -> bool:
    """Whether the database stopped a statement at the journal's bound: SQLite's busy timeout, PostgreSQL's
    statement timeout, the driver's command timeout."""
    cause: BaseException | None = exc.orig
    while cause is not None:
        if (isinstance(cause, TimeoutError) or getattr(cause, "sqlstate", None) in _TIMEOUT_SQLSTATES
                or str(getattr(cause, "sqlite_errorname", "")).startswith("SQLITE_BUSY")):
            return True
        cause = cause.__cause__
    return False


def _numeric_text(value: Any) -> str | None:
    """A NUMERIC parameter as PostgreSQL reads it exactly: a Decimal in plain notation."""
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


class _InsertNew:
    """Insert-or-ignore of many rows of `table` (unique on `keys`) as one prepared statement, run on the
    driver's connection: the hot write paths (every fill; a decision and its order) without SQLAlchemy's
    per-call statement building and compilation, result processing and cursor round trips. Values are
    bound with the columns' own SQLAlchemy bind processors, so they are stored exactly as a Core insert
    stores them. With `update`, a row whose key exists has those columns replaced by the new row's
    instead (`ON CONFLICT ... DO UPDATE`, where the existing row matches `where`): one row per key in
    a call.

    - SQLite (aiosqlite): `INSERT ... ON CONFLICT DO NOTHING` through `executemany`, one hop to the
      connection's thread, then the commit, one more (SQLAlchemy's begin and commit cost more than
      both); the new rows are its rowcount (ignored rows change nothing).
    - PostgreSQL (asyncpg): `INSERT ... SELECT * FROM unnest($1::type[], ...) ON CONFLICT DO NOTHING
      RETURNING id`, one column array per parameter (NUMERIC ones as text), so that two rows or a
      hundred thousand are one statement and one round trip; a single row goes as a plain `VALUES` row.
      The new rows are those returned. It runs outside a transaction block (SQLAlchemy's asyncpg
      adapter begins a transaction only when its own cursor runs), so one statement is its own
      transaction, committed (and flushed, with `synchronous_commit` on) before the answer comes back:
      BEGIN and COMMIT would be two more round trips for nothing.
    """

    def __init__(self, table: Table, keys: tuple[str, ...], dialect: Dialect, update: Sequence[str] = (),
                 where: ColumnElement[bool] | None = None) -> None:
        columns = [column for column in table.columns if column.name != "id"]
        self.names = [column.name for column in columns]
        self._processors = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
        self._postgresql = dialect.name == "postgresql"
        quote = dialect.identifier_preparer.quote
        into = f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in self.names)})"
        action = "DO NOTHING"
        if update:
            action = "DO UPDATE SET " + ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in update)
            if where is not None:
                action += f" WHERE {where.compile(dialect=dialect, compile_kwargs={'literal_binds': True})}"
        conflict = f"ON CONFLICT ({', '.join(quote(key) for key in keys)}) {action}"
        if self._postgresql:
            # Arrays of the types without their modifiers: an explicit cast to VARCHAR(128)[] would
            # truncate a longer value silently, where the insert's own assignment refuses it.
            types = [re.sub(r"\(.*?\)", "", column.type.compile(dialect=dialect)) for column in columns]
            # NUMERIC travels as text (exact, plain notation) and is cast by the server: asyncpg's binary
            # encoding of Decimal costs three times as much, and a backfill is mostly numbers.
            self._as_text = [sql_type.startswith("NUMERIC") for sql_type in types]
            arrays = ", ".join(
                f"${i}::text[]::{sql_type}[]" if as_text else f"${i}::{sql_type}[]"
                for i, (sql_type, as_text) in enumerate(zip(types, self._as_text, strict=True), 1)
            )
            self.sql = f"{into} SELECT * FROM unnest({arrays}) {conflict} RETURNING {quote('id')}"
            values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            self.sql_one = f"{into} VALUES ({values}) {conflict} RETURNING {quote('id')}"
        else:
            self.sql = f"{into} VALUES ({', '.join('?' for _ in columns)}) {conflict}"

    @staticmethod
    def _column(values: list[Any], process: Any) -> list[Any]:
        """One column's values as bound: a value shared by every row (`recorded_at`) processed once."""
        if process is None:
            return values
        first = values[0]
        if all(value is first for value in values):
            return [process(first)] * len(values)
        return [process(value) for value in values]

    def bind(self, rows: list[dict[str, Any]]) -> list[list[Any]]:
        """The rows' values, column by column, as the driver takes them."""
        try:
            columns = [
                self._column([row[name] for row in rows], process)
                for name, process in zip(self.names, self._processors, strict=True)
            ]
        except Exception as exc:  # reported as a Core statement reports a value it cannot bind
            message = f"({type(exc).__module__}.{type(exc).__name__}) {exc}"
            raise StatementError(message, self.sql, rows[:10], exc) from exc
        if self._postgresql and len(rows) > 1:
            columns = [[_numeric_text(v) for v in values] if as_text else values
                       for values, as_text in zip(columns, self._as_text, strict=True)]
        return columns

    async def run(self, driver_connection: Any, columns: list[list[Any]]) -> int:
        """Run the statement on bound `columns`; how many rows were new. The driver's errors come out
        as SQLAlchemy's DBAPIError, as from a Core statement."""
        try:
            if self._postgresql:
                if len(columns[0]) == 1:  # the live path: a plain VALUES row plans and runs faster
                    row = [values[0] for values in columns]
                    return len(await driver_connection.fetch(self.sql_one, *row))
                return len(await driver_connection.fetch(self.sql, *columns))
            cursor = await driver_connection.executemany(self.sql, list(zip(*columns, strict=True)))
            return int(cursor.rowcount)
        except Exception as exc:
            raise DBAPIError(self.sql, None, exc) from exc


@dataclass(frozen=True, slots=True)
class _Filters:
    since: datetime | None = None
    until: datetime | None = None
    symbol: str | None = None
    side: Side | str | None = None
    asset: str | None = None
    limit: int | None = None
    offset: int | None = None


def _filtered_column(table: Table, name: str, value: object) -> ColumnElement[Any]:
    """The column a filter applies to: `name`, or for an asset filter the symbol it is the base of."""
    column = "symbol" if name == "asset" else name
    if column not in table.c:
        raise ConfigError(name, f"no {name} filter for {table.name}", value)
    return table.c[column]


def _side(value: Side | str) -> Side:
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


class TraderLock:
    """The one-trader-per-journal lock, held from `take_trader_lock` until `release`. `held()` turns False
    the moment the lock is lost (on PostgreSQL, its session ended or stopped answering), and the listeners
    are called then, synchronously: whatever they stop, nothing runs in between."""

    def __init__(self, release: Callable[[], Awaitable[None]]) -> None:
        self._release = release
        self._listeners: list[Callable[[str], None]] = []
        self.lost_cause: str | None = None

    def held(self) -> bool:
        return self.lost_cause is None

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call `listener(cause)` when the lock is lost; at once if it already is."""
        self._listeners.append(listener)
        if self.lost_cause is not None:
            listener(self.lost_cause)

    def lose(self, cause: str) -> None:
        if self.lost_cause is None:
            self.lost_cause = cause
            for listener in self._listeners:
                listener(cause)

    async def release(self) -> None:
        await self._release()


async def take_trader_lock(database_url: str, data_dir: str | Path, poll_secs: float = LOCK_POLL_SECS,
                           first_try_after_secs: float = 0) -> TraderLock:
    """Wait until this process holds the one-trader-per-journal lock, trying every `poll_secs` (the first
    time after `first_try_after_secs`: a trader that has just lost it lets a standby take it): while
    another process (or another holder in this one) has it, this one is a standby (`trader_lock_waiting`
    is logged once).

    PostgreSQL: a session advisory lock on a dedicated connection, released when it closes (also when
    the process dies), and watched: the connection's end, or a check every `poll_secs` that finds it
    gone or gets no answer, loses it. SQLite: an exclusive flock on `<database file>.lock` (in-memory
    SQLite: `<data_dir>/deltakeeper.lock`), released by the kernel when the file closes.
    """
    url = normalise_url(database_url)
    await asyncio.sleep(first_try_after_secs)
    if make_url(url).get_backend_name() == "postgresql":
        return await _advisory_lock(url, poll_secs)
    database_file = sqlite_file(url)
    lock_path = (Path(f"{database_file}.lock") if database_file is not None
                 else Path(data_dir) / "deltakeeper.lock")
    return await _file_lock(lock_path, poll_secs)


@asynccontextmanager
async def acquire_trader_lock(database_url: str, data_dir: str | Path, poll_secs: float = LOCK_POLL_SECS
                              ) -> AsyncIterator[TraderLock]:
    """`take_trader_lock` for the life of the block."""
    lock = await take_trader_lock(database_url, data_dir, poll_secs)
    try:
        yield lock
    finally:
        await lock.release()


_LOCK_HELD_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND pid = pg_backend_pid() AND (classid::bigint << 32 | objid::bigint) = $1)"
)


_UNREACHABLE = (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError)
"""The database is down, starting or restarting: a standby waits for it as for the lock."""


async def _advisory_lock(url: str, poll_secs: float) -> TraderLock:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await _locked_session(dsn, poll_secs)

    def session_ended(_conn: object) -> None:
        lock.lose("the lock's database session ended")

    async def watch() -> None:
        while True:
            await asyncio.sleep(poll_secs)
            try:
                still_held = await conn.fetchval(_LOCK_HELD_SQL, TRADER_LOCK_KEY,
                                                 timeout=LOCK_CHECK_TIMEOUT_SECS)
            except Exception as exc:
                lock.lose(f"the lock's database session does not answer: {type(exc).__name__} {exc}")
                return
            if not still_held:
                lock.lose("the database no longer shows the lock held by this session")
                return

    async def release() -> None:
        conn.remove_termination_listener(session_ended)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        conn.terminate()  # the server ends the session, and its lock with it

    lock = TraderLock(release)
    conn.add_termination_listener(session_ended)
    watcher = asyncio.create_task(watch(), name="trader-lock-watch")
    return lock


async def _locked_session(dsn: str, poll_secs: float) -> asyncpg.Connection:
    """A session holding the trader lock, once no other does; waiting through outages of the database."""
    waiting = unreachable = False
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(dsn, timeout=LOCK_CHECK_TIMEOUT_SECS)
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", TRADER_LOCK_KEY,
                                          timeout=LOCK_CHECK_TIMEOUT_SECS):
                if not waiting:
                    waiting = True
                    log.warning("trader_lock_waiting", lock=f"PostgreSQL advisory lock {TRADER_LOCK_KEY}")
                await asyncio.sleep(poll_secs)
            return conn
        except _UNREACHABLE as exc:
            if not unreachable:
                unreachable = True
                log.warning("trader_lock_unreachable", error=f"{type(exc).__name__}: {exc}")
            if conn is not None:
                conn.terminate()
        except BaseException:
            if conn is not None:
                conn.terminate()
            raise
        await asyncio.sleep(poll_secs)


async def _file_lock(path: Path, poll_secs: float) -> TraderLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    handle.seek(0)
                    holder = handle.read().strip() or None
                    log.warning("trader_lock_waiting", lock=str(path), holder_pid=holder)
                await asyncio.sleep(poll_secs)
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
    except BaseException:
        handle.close()
        raise

    async def release() -> None:
        handle.close()

    return TraderLock(release)
