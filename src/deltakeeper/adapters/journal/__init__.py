"""The journal: SQLAlchemy (async) on SQLite by default, PostgreSQL in production; Alembic migrations
ship in `migrations/` next to this file.

- `engine.py`: the engine (drivers, SQLite pragmas, PostgreSQL timeouts) and the time bound on a call;
- `reads.py`: `SqlJournalReader`, the reads (ports.JournalReader, and the trading loop's);
- `store.py`: `SqlJournal`, the writes on top (ports.Journal); `insert.py`: its prepared hot inserts;
- `lock.py`: the one-trader-per-journal lock; `console.py`: the web console's bounded reads;
- `models.py`: the tables; `migrate.py`: URLs, schema upgrades and revisions.
"""

from deltakeeper.adapters.journal.lock import TraderLock, acquire_trader_lock, take_trader_lock
from deltakeeper.adapters.journal.migrate import normalise_url, upgrade
from deltakeeper.adapters.journal.reads import SqlJournalReader, open_reader
from deltakeeper.adapters.journal.store import SqlJournal, create_journal

__all__ = [
    "SqlJournal", "SqlJournalReader", "TraderLock", "acquire_trader_lock", "create_journal", "normalise_url",
    "open_reader", "take_trader_lock", "upgrade",
]
