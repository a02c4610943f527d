"""The emulator on loopback, in process, in either wire dialect (Bybit v5, Binance USD-M), and the adapter
on it through stock ccxt: shared by the adapter's integration tests (their `emulator` and `exchange`
fixtures are in conftest.py)."""

from __future__ import annotations

import random
from typing import Any

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.sim.binance import server as binance
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.clock import WallClock

KEY, SECRET = "dk-test-key", "dk-test-secret"
DIALECTS = ("bybit", "binance")
EXCHANGE_IDS = {"bybit": "bybit", "binance": "binanceusdm"}
"""The ccxt client that speaks each dialect."""

Emulator = RunningServer | binance.RunningServer


async def start_emulator(speed: float = 600, allow_withdraw: bool = False, dialect: str = "bybit"
                         ) -> Emulator:
    if dialect == "binance":
        return await binance.serve("127.0.0.1", 0, {KEY: SECRET}, speed=speed, seed=7, scenario=False)
    return await serve("127.0.0.1", 0, {KEY: SECRET}, speed=speed, seed=7, scenario=False,
                       allow_withdraw=allow_withdraw)


def exchange_id(server: Emulator) -> str:
    return EXCHANGE_IDS["binance" if isinstance(server, binance.RunningServer) else "bybit"]


def adapter(server: Emulator, key: str = KEY, secret: str = SECRET, **settings: Any) -> CcxtExchange:
    """The adapter on the emulator through stock ccxt, with short reconnect back-offs."""
    return CcxtExchange(exchange_id(server), clock=WallClock(), api_key=key, secret=secret,
                        base_url=server.url, backoff_initial_secs=0.05, backoff_max_secs=0.5,
                        rng=random.Random(1), **settings)
