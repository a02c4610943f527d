"""`SqlJournal`: the Journal port over SQLAlchemy Core (async): the writes (reads: `reads.py`).

Writes are Core statements and no ORM objects. Fills and funding payments are insert-or-ignore on the
exchange's ids, which makes ingestion idempotent. The hottest writes skip SQLAlchemy's statement
machinery and go to the driver as statements prepared once (`insert.InsertNew`): fills and funding
(every fill, and backfills of thousands: on SQLite one `executemany` and the commit, on PostgreSQL one
round trip however many rows, on a connection the journal keeps for it), and a decision with the order
it is about to send (on the path from a tick to that order). Either way a call is one transaction,
committed before it returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deltakeeper.adapters.journal.engine import WRITER_RECYCLE_SECS, journal_engine, now_utc
from deltakeeper.adapters.journal.insert import InsertNew
from deltakeeper.adapters.journal.models import (
    control,
    control_events,
    decisions,
    fills,
    funding_payments,
    orders,
    snapshots,
)
from deltakeeper.adapters.journal.reads import SqlJournalReader
from deltakeeper.domain.errors import ForeignOrder
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState, OrderStatus, is_ours
from deltakeeper.domain.records import ControlState, DecisionRecord, OrderRecord

FINAL_STATUSES = tuple(status.value for status in OrderStatus if status.is_final)


def create_journal(database_url: str, timeout_secs: float | None = None) -> SqlJournal:
    """A journal over an upgraded database (see `migrate.upgrade`), its engine made by `journal_engine`
    (which tells what `timeout_secs` bounds)."""
    return SqlJournal(journal_engine(database_url, timeout_secs), timeout_secs)


class SqlJournal(SqlJournalReader):
    """The journal (ports.Journal) on SQLite or PostgreSQL: the writes, on the reads of `SqlJournalReader`."""

    def __init__(self, engine: AsyncEngine, timeout_secs: float | None = None) -> None:
        super().__init__(engine, timeout_secs)
        self._insert = postgresql.insert if self._postgresql else sqlite.insert
        self._new_fills = InsertNew(fills, ("symbol", "trade_id"), engine.dialect)
        self._new_funding = InsertNew(funding_payments, ("payment_id",), engine.dialect)
        self._new_decisions = InsertNew(decisions, ("decision_id",), engine.dialect)
        # An order is inserted, or replaced by client order id unless the row is in a final state.
        self._order_upserts = InsertNew(
            orders, ("client_order_id",), engine.dialect,
            update=[column.name for column in orders.columns
                    if column.name not in ("id", "client_order_id", "updated_ts")],
            where=orders.c.status.not_in(FINAL_STATUSES),
        )
        self._writer: AsyncConnection | None = None
        self._writer_driver: Any = None
        self._writer_since = 0.0
        self._writer_busy = False

    async def close(self) -> None:
        await self._drop_writer(invalidate=False)
        await super().close()

    # -- writes ---------------------------------------------------------------------------------

    async def record_decision(
        self, decision: DecisionRecord, pending_order: OrderRecord | None = None
    ) -> None:
        """Store a decision, and the order it is about to send, in one transaction (one commit before the
        order leaves); recording the same decision id again is a no-op."""
        recorded_at = now_utc()
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
        await self._write([(self._order_upserts, [self._order_row(order, now_utc())])])

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
                "recorded_at": now_utc(),
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
        recorded_at = now_utc()
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
                "kind": fill.kind.value,
            }
            for fill in new_fills
        ]
        return await self._insert_new(self._new_fills, rows)

    async def record_funding(self, payments: Sequence[FundingPayment]) -> int:
        """Store payments once each (unique on payment id), in one transaction; returns how many were
        new."""
        recorded_at = now_utc()
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

    async def _insert_new(self, insert: InsertNew, rows: list[dict[str, Any]]) -> int:
        """Insert-or-ignore `rows` in one transaction, committed on return; how many were new."""
        if not rows:
            return 0
        [added] = await self._write([(insert, rows)])
        return added

    async def _write(self, writes: list[tuple[InsertNew, list[dict[str, Any]]]]) -> list[int]:
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

    async def _run(self, driver: Any, bound: list[tuple[InsertNew, list[list[Any]]]]) -> list[int]:
        """Run bound statements on the driver's connection in one transaction. PostgreSQL: one statement
        is its own transaction (see `InsertNew`), several are wrapped in one; SQLite: the driver's
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

    async def _run_on_writer(self, bound: list[tuple[InsertNew, list[list[Any]]]]) -> list[int]:
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
        recorded_at = now_utc()
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
        ts = state.ts or now_utc()
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

    async def record_control_event(self, action: str, by: str, reason: str, ts: datetime) -> None:
        """Journal a control event that changes no state (a `cancel-all` request), beside the halts and
        resumes `set_control_state` journals (app.control.RecordEvent)."""
        row = {"ts": ts, "action": action, "by": by[:128], "reason": reason}
        async with self._bounded("control event"), self._engine.begin() as conn:
            await conn.execute(control_events.insert().values(row))
