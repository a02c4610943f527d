"""The one-trader-per-journal lock: a PostgreSQL advisory lock, or a file lock beside a SQLite database."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from deltakeeper.adapters.journal.migrate import normalise_url, sqlite_file

TRADER_LOCK_KEY = int.from_bytes(b"dktrader", "big", signed=True)
"""The PostgreSQL advisory lock key held by the one active trader of a database."""
LOCK_POLL_SECS = 1.0
"""How often a standby tries the trader lock, and the holder of a PostgreSQL lock checks it still has it."""
LOCK_CHECK_TIMEOUT_SECS = 5.0
"""A check of the PostgreSQL trader lock not answered within this long loses the lock."""
log = structlog.get_logger("deltakeeper.journal")


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
