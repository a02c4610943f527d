"""A Bybit emulator whose market stands still: the simulated clock starts on the hour and runs at wall speed,
with a quote an hour apart, so every market has the quote of the start for the hour after it. The tests that
compare the emulator's own state with what a client reads from it need prices that do not move between
the two reads."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.exposure import Position
from deltakeeper.ports import Clock
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.clock import WallClock

KEY, SECRET = "dk-margin-key", "dk-margin-secret"
LINEAR, INVERSE, SPOT = "SOL/USDT:USDT", "SOL/USD:SOL", "SOL/USDT"
HOUR_SECS = 3600


@asynccontextmanager
async def frozen_emulator() -> AsyncIterator[RunningServer]:
    """The emulator on loopback, its one account holding the default scenario's 1,000 SOL and 100,000 USDT
    (the scenario itself off)."""
    start = datetime.fromtimestamp(time.time() // HOUR_SECS * HOUR_SECS, UTC)
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=1, seed=7, start=start, tick_secs=HOUR_SECS,
                         scenario=False)
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def ccxt_client(server: RunningServer) -> AsyncIterator[Any]:
    """Stock ccxt.pro on the emulator, its markets loaded, without ccxt's rate limiter."""
    client = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(client, server.url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def opened_adapter(server: RunningServer, clock: Clock | None = None) -> AsyncIterator[CcxtExchange]:
    """The adapter on the emulator, its instruments loaded, without ccxt's rate limiter: on the wall clock
    (as the venue stamps its records) unless `clock` is given."""
    exchange = CcxtExchange("bybit", clock=clock or WallClock(), api_key=KEY, secret=SECRET,
                            base_url=server.url, rng=random.Random(1), ccxt_config={"enableRateLimit": False})
    try:
        await exchange.load_instruments()
        yield exchange
    finally:
        await exchange.close()


def sell(server: RunningServer, category: str, bybit_symbol: str, qty: str) -> None:
    """A market sell through the emulator's own order path (as its REST route places it)."""
    server.venue.create_order(KEY, {"category": category, "symbol": bybit_symbol, "side": "Sell",
                                    "orderType": "Market", "qty": qty})


def engine_position(server: RunningServer, symbol: str) -> Position:
    return next(p for p in server.venue.engine.positions(KEY) if p.symbol == symbol)


def wallet(server: RunningServer, coin: str) -> Decimal:
    return server.venue.engine.balances(KEY)[coin]


def short_liquidation_price(wallet_usdt: Decimal, short_coin: Decimal, entry: Decimal,
                            mmr: Decimal) -> Decimal:
    """Where a cross-margined linear short alone in its wallet meets its maintenance margin, in the first
    tier: `wallet - q (L - entry) = mmr q L`."""
    return (wallet_usdt + short_coin * entry) / (short_coin * (1 + mmr))
