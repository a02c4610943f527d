"""Fixtures of the adapter's integration tests: the emulator, and the adapter on it with its markets
loaded. A test module with fixtures of these names of its own uses those."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.integration.emulator_clients import adapter, start_emulator

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.sim.bybit.server import RunningServer


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    server = await start_emulator()
    yield server
    await server.close()


@pytest.fixture
async def exchange(emulator: RunningServer) -> AsyncIterator[CcxtExchange]:
    bybit = adapter(emulator)
    await bybit.load_instruments()
    yield bybit
    await bybit.close()
