"""Fixtures of the adapter's integration tests: the emulator, and the adapter on it with its markets
loaded. The emulator speaks Bybit unless a test asks for a dialect, as
`@pytest.mark.parametrize("emulator", DIALECTS, indirect=True)` does. A test module with fixtures of these
names of its own uses those."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.integration.emulator_clients import Emulator, adapter, start_emulator

from deltakeeper.adapters.ccxt_exchange import CcxtExchange


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    server = await start_emulator(dialect=getattr(request, "param", "bybit"))
    yield server
    await server.close()


@pytest.fixture
async def exchange(emulator: Emulator) -> AsyncIterator[CcxtExchange]:
    client = adapter(emulator)
    await client.load_instruments()
    yield client
    await client.close()
