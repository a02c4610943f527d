"""The Bybit emulator on loopback, in process, and the adapter on it through stock ccxt: shared by the
adapter's integration tests (their `emulator` and `exchange` fixtures are in conftest.py)."""

from __future__ import annotations

import random
from typing import Any

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.clock import WallClock

KEY, SECRET = "dk-test-key", "dk-test-secret"


async def start_emulator(speed: float = 600, allow_withdraw: bool = False) -> RunningServer:
    return await serve("127.0.0.1", 0, {KEY: SECRET}, speed=speed, seed=7, scenario=False,
                       allow_withdraw=allow_withdraw)


def adapter(server: RunningServer, key: str = KEY, secret: str = SECRET, **settings: Any) -> CcxtExchange:
    """The adapter on the emulator through stock ccxt, with short reconnect back-offs."""
    return CcxtExchange("bybit", clock=WallClock(), api_key=key, secret=secret, base_url=server.url,
                        backoff_initial_secs=0.05, backoff_max_secs=0.5, rng=random.Random(1), **settings)
