"""The journal's database engine (SQLite or PostgreSQL, async drivers) and the time bound on its calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from deltakeeper.adapters.journal.migrate import normalise_url
from deltakeeper.domain.errors import JournalUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITER_RECYCLE_SECS = 1800.0
"""The PostgreSQL pool's `pool_recycle`, which also renews the journal's writer connection."""

def now_utc() -> datetime:
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


def journal_engine(database_url: str, timeout_secs: float | None = None) -> AsyncEngine:
    """The engine of a journal (see `store.create_journal`); `postgresql://` and `sqlite:///` URLs are
    mapped to their async drivers.

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
        # transaction on close (a commit in `begin()`, else a rollback), and `InsertNew` commits or rolls
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
    return engine


class JournalConnection:
    """A journal's engine, and the bound on the time of each of its calls."""

    def __init__(self, engine: AsyncEngine, timeout_secs: float | None = None) -> None:
        self._engine = engine
        self._timeout_secs = timeout_secs
        self._postgresql = engine.dialect.name == "postgresql"

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Run the block within the journal's timeout, else raise JournalUnavailable. A call cut short
        leaves nothing behind: its transaction is rolled back, or its connection dropped (the writer's,
        see `SqlJournal._run_on_writer`), and the database has stopped the statement itself (see
        `journal_engine`)."""
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

    async def close(self) -> None:
        await self._engine.dispose()


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

