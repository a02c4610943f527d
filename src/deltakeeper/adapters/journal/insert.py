"""`InsertNew`: the journal's hot writes as statements prepared once and run on the driver's connection."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Table
from sqlalchemy.exc import DBAPIError, StatementError


def _numeric_text(value: Any) -> str | None:
    """A NUMERIC parameter as PostgreSQL reads it exactly: a Decimal in plain notation."""
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


class InsertNew:
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
