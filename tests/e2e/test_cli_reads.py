"""Read commands (`journal ...`, `status`) pointed at the wrong folder or database refuse, name the
database, and create nothing: the real command in a subprocess."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deltakeeper.redact import redact_url
from tests.e2e.cli_helpers import clean_env, deltakeeper

READS = [("journal", "fills"), ("journal", "decisions", "--format", "json"), ("journal", "pnl"), ("status",)]


@pytest.mark.parametrize("command", READS, ids=lambda command: " ".join(command[:2]))
def test_a_read_of_an_empty_folder_exits_2_naming_the_database_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = deltakeeper(*command, env=clean_env(empty), timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "DK_DATA_DIR: expected a journal to read" in result.stderr
    assert f"sqlite+aiosqlite:///{empty / 'deltakeeper.db'}: no such file" in result.stderr
    assert list(empty.iterdir()) == []


def test_a_read_of_a_missing_folder_creates_no_folder(tmp_path: Path) -> None:
    result = deltakeeper("journal", "orders", env=clean_env(tmp_path / "typo"), timeout=30)
    assert result.returncode == 2 and "no such file" in result.stderr
    assert list(tmp_path.iterdir()) == []


async def test_a_read_of_a_database_without_the_journal_exits_2_with_the_password_redacted(
    database_url: str, tmp_path: Path
) -> None:
    if database_url.startswith("sqlite"):  # a SQLite file that is not a journal
        sqlite3.connect(tmp_path / "journal.db").close()
    env = clean_env(tmp_path / "data", DK_DATABASE_URL=database_url)
    result = deltakeeper("journal", "funding", env=env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "DK_DATABASE_URL: expected a journal to read" in result.stderr
    assert "no journal schema" in result.stderr
    assert redact_url(database_url) in result.stderr


def test_a_read_of_a_journal_at_another_schema_revision_exits_1_asking_for_an_upgrade(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(data)
    assert deltakeeper("db", "upgrade", env=env, timeout=30).returncode == 0
    with sqlite3.connect(data / "deltakeeper.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000_older'")
    result = deltakeeper("journal", "fills", env=env, timeout=30)
    assert result.returncode == 1
    assert "is at schema revision 0000_older" in result.stderr and "deltakeeper db upgrade" in result.stderr
    assert sorted(p.name for p in data.iterdir()) == ["deltakeeper.db"]
