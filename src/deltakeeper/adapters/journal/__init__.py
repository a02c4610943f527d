"""The journal: SQLAlchemy (async) on SQLite by default, PostgreSQL in production; Alembic migrations
ship in `migrations/` next to this file."""

from deltakeeper.adapters.journal.migrate import normalise_url, upgrade
from deltakeeper.adapters.journal.store import SqlJournal, TraderLockHeld, acquire_trader_lock, create_journal

__all__ = [
    "SqlJournal", "TraderLockHeld", "acquire_trader_lock", "create_journal", "normalise_url", "upgrade",
]
