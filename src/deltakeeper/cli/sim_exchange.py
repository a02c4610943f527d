"""`deltakeeper sim-exchange`: run the emulator, in either wire dialect, until interrupted."""

from __future__ import annotations

from collections.abc import Mapping

from deltakeeper.config import Settings
from deltakeeper.sim.binance import server as binance
from deltakeeper.sim.bybit.server import serve
from deltakeeper.sim.serving import serve_until_signal

DIALECTS = ("bybit", "binance")


async def run_emulator(
    settings: Settings, host: str, port: int, credentials: Mapping[str, str], allow_withdraw: bool,
    option_iv: float | None = None, dialect: str = "bybit",
) -> None:
    """Serve until SIGINT or SIGTERM; print `listening on http://HOST:PORT` (the bound port) once ready.
    With `option_iv`, the Bybit dialect also lists USDC options priced at that implied volatility.
    `dialect`: the wire protocol, Bybit v5 or Binance USD-M futures (`deltakeeper.sim.binance`)."""
    speed, seed = settings.sim_speed, settings.sim_seed
    tick_secs, scenario = max(1, int(settings.sim_tick_secs)), settings.sim_scenario == "market-maker"
    if dialect == "binance":
        running = await binance.serve(host, port, credentials, speed=speed, seed=seed, tick_secs=tick_secs,
                                      scenario=scenario)
        await serve_until_signal(running.url, running.close)
        return
    server = await serve(host, port, credentials, speed=speed, seed=seed, allow_withdraw=allow_withdraw,
                         tick_secs=tick_secs, scenario=scenario, option_iv=option_iv)
    await serve_until_signal(server.url, server.close)
