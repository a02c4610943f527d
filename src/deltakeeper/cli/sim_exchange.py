"""`deltakeeper sim-exchange`: run the emulator until interrupted."""

from __future__ import annotations

from collections.abc import Mapping

from deltakeeper.config import Settings
from deltakeeper.sim.bybit.server import serve
from deltakeeper.sim.serving import serve_until_signal


async def run_emulator(
    settings: Settings, host: str, port: int, credentials: Mapping[str, str], allow_withdraw: bool,
    option_iv: float | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; print `listening on http://HOST:PORT` (the bound port) once ready.
    With `option_iv`, the emulator also lists USDC options priced at that implied volatility."""
    server = await serve(
        host, port, credentials, speed=settings.sim_speed, seed=settings.sim_seed,
        allow_withdraw=allow_withdraw, tick_secs=max(1, int(settings.sim_tick_secs)),
        scenario=settings.sim_scenario == "market-maker", option_iv=option_iv,
    )
    await serve_until_signal(server.url, server.close)
