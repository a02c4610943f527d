"""A journal that does not answer (another session holds its lock) fails within DK_JOURNAL_TIMEOUT_SECS,
keeps nothing of the call, and the database stops the statement (real SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from tests.integration.test_journal import decision, exchange_state, pending_order

from deltakeeper.adapters.journal import SqlJournal, create_journal, upgrade
from deltakeeper.adapters.journal.migrate import sqlite_file
from deltakeeper.domain.errors import JournalUnavailable
from deltakeeper.domain.orders import OrderStatus

TIMEOUT_SECS = 0.5


@pytest.fixture
async def journal(database_url: str) -> AsyncIterator[SqlJournal]:
    upgrade(database_url)
    journal = create_journal(database_url, timeout_secs=TIMEOUT_SECS)
    yield journal
    await journal.close()


def _server_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def write_locked(database_url: str) -> AsyncIterator[asyncpg.Connection | None]:
    """Another session holds the lock every journal write needs: SQLite's write lock (BEGIN EXCLUSIVE),
    PostgreSQL's lock on the orders table (a decision's own row goes in; its order waits)."""
    database_file = sqlite_file(database_url)
    if database_file is not None:
        other = sqlite3.connect(database_file, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield None
        finally:
            other.rollback()
            other.close()
        return
    session = await asyncpg.connect(_server_url(database_url))
    try:
        async with session.transaction():
            await session.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            yield session
    finally:
        await session.close()


async def _lock_waiters(session: asyncpg.Connection) -> int:
    """Statements of other sessions of this database still waiting on a lock."""
    count = await session.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
    )
    return int(count)


async def test_a_decision_and_its_order_time_out_together_and_keep_nothing(journal: SqlJournal,
                                                                            database_url: str) -> None:
    async with write_locked(database_url) as session:
        with pytest.raises(JournalUnavailable, match=r"no answer within 0\.5 s"):
            await journal.record_decision(decision(7), pending_order(7))
        if session is not None:  # the server stopped the statement, not only the coroutine awaiting it
            for _ in range(50):
                if await _lock_waiters(session) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await _lock_waiters(session) == 0
    assert await journal.list_decisions() == []
    assert await journal.list_orders() == []
    await journal.record_decision(decision(7), pending_order(7))  # the journal works again once free
    assert [d["decision_id"] for d in await journal.list_decisions()] == [7]
    assert [o.client_order_id for o in await journal.open_orders()] == [pending_order(7).client_order_id]


async def test_an_order_update_and_the_trading_reads_time_out(journal: SqlJournal, database_url: str) -> None:
    await journal.record_decision(decision(7), pending_order(7))
    filled = exchange_state(pending_order(7).client_order_id, OrderStatus.FILLED, filled="0.25")
    async with write_locked(database_url) as session:
        with pytest.raises(JournalUnavailable):
            await journal.update_order(filled)
        with pytest.raises(JournalUnavailable):
            await journal.record_order(pending_order(8))
        if session is not None:  # PostgreSQL: the table lock blocks the reads of it too
            with pytest.raises(JournalUnavailable):
                await journal.open_orders()
    [order] = await journal.open_orders()
    assert order.status is OrderStatus.PENDING
