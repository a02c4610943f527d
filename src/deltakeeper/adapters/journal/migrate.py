"""Database URLs and schema migrations (Alembic, shipped inside the package)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from deltakeeper.domain.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def normalise_url(url: str) -> str:
    """The SQLAlchemy async URL for a `postgresql://`, `postgres://` or `sqlite:///` URL."""
    scheme, separator, rest = url.partition("://")
    driver = _ASYNC_DRIVERS.get(scheme.lower()) if separator else None
    if driver is None:
        raise ConfigError("DK_DATABASE_URL", "a postgresql://, postgres:// or sqlite:/// URL", scheme)
    return f"{driver}://{rest}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL and for in-memory SQLite."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for the packaged migrations; the URL travels outside the ini parser so
    percent signs in passwords need no escaping."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = normalise_url(database_url)
    return config


def upgrade(database_url: str) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there.

    Runs in a worker thread because the migration environment drives its own event loop, which cannot
    nest inside a running one: this works from sync code and from a coroutine (where it blocks the
    loop for the duration; use `await asyncio.to_thread(upgrade, url)` to avoid that).
    """
    config = alembic_config(database_url)
    database_file = sqlite_file(database_url)
    if database_file is not None:
        database_file.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1) as worker:
        worker.submit(command.upgrade, config, "head").result()


async def schema_revisions(database_url: str) -> tuple[set[str], set[str]]:
    """(the database's Alembic revisions, empty without a schema; the newest revisions shipped). Creates
    nothing."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    head = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    engine = create_async_engine(normalise_url(database_url))
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    finally:
        await engine.dispose()
    return set(current), head
