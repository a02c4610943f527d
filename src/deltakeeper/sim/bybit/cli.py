"""`deltakeeper sim-exchange`: run the emulator until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping

from deltakeeper.config import Settings
from deltakeeper.sim.bybit.server import serve


async def run_emulator(
    settings: Settings, host: str, port: int, credentials: Mapping[str, str], allow_withdraw: bool
) -> None:
    """Serve until SIGINT or SIGTERM; print `listening on http://HOST:PORT` (the bound port) once ready."""
    server = await serve(
        host, port, credentials, speed=settings.sim_speed, seed=settings.sim_seed,
        allow_withdraw=allow_withdraw, tick_secs=max(1, int(settings.sim_tick_secs)),
        scenario=settings.sim_scenario == "market-maker",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    print(f"listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
