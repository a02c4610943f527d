"""The journal: SQLAlchemy (async) on SQLite by default, PostgreSQL in production; Alembic migrations
ship in `migrations/` next to this file."""

from deltakeeper.adapters.journal.migrate import normalise_url, upgrade
from deltakeeper.adapters.journal.store import (
    SqlJournal,
    TraderLock,
    acquire_trader_lock,
    create_journal,
    take_trader_lock,
)

__all__ = [
    "SqlJournal", "TraderLock", "acquire_trader_lock", "create_journal", "normalise_url", "take_trader_lock",
    "upgrade",
]
