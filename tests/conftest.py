"""Databases for integration tests: a SQLite file per test, and a fresh PostgreSQL database per test
when DK_TEST_POSTGRES_URL is set (an unreachable server then fails the test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

POSTGRES_URL_VARIABLE = "DK_TEST_POSTGRES_URL"


async def _run_on_server(server: URL, sql: str) -> None:
    connection = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty database: `sqlite:///<tmp file>`, or a uniquely named PostgreSQL database
    created through DK_TEST_POSTGRES_URL's server and dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}"
        return
    server_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not server_url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests need a server URL")
    server = make_url(server_url).set(drivername="postgresql")
    name = f"dk_test_{uuid.uuid4().hex}"
    await _run_on_server(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await _run_on_server(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
