"""The Binance USD-M dialect of the emulator as a library: `build_app` (an aiohttp application) and
`serve` (bound and running). The market, the accounts, their scenarios and the control endpoints
(`/sim/faults`, `/sim/drop-websockets`) are the Bybit dialect's (`deltakeeper.sim.bybit.server`); only
the wire protocol differs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address

from aiohttp import web

from deltakeeper.sim.binance.rest import VENUE, dispatch
from deltakeeper.sim.binance.venue import BinanceVenue
from deltakeeper.sim.binance.ws import Hub
from deltakeeper.sim.bybit.faults import FaultConfig, Faults
from deltakeeper.sim.bybit.serializers import MAINTENANCE_TIERS_USD
from deltakeeper.sim.bybit.server import SHUTDOWN_TIMEOUT_SECS, Driver, default_feed
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

HUB = web.AppKey("binance_hub", Hub)
_DRIVER = web.AppKey("binance_driver", Driver)


def build_app(
    credentials: Mapping[str, str],
    *,
    speed: float,
    seed: int,
    faults: FaultConfig = FaultConfig(),
    start: datetime | None = None,
    tick_secs: int = 30,
    scenario: bool = True,
) -> web.Application:
    """The emulator's application speaking Binance USD-M; the market starts moving when it starts. Ids are
    drawn from `seed` and the simulated start, as in the Bybit dialect."""
    clock = SimClock(speed, anchor_sim=start)
    ids_seed = seed * 1_000_003 + int((start or clock.now()).timestamp() * 1000)
    engine = SimEngine(default_instruments(), seed=ids_seed)
    engine.maintenance_tiers = MAINTENANCE_TIERS_USD  # the brackets `/fapi/v1/leverageBracket` publishes
    scenarios = {key: InventoryScenario(ScenarioParams(seed=seed + i)) for i, key in enumerate(credentials)}
    for key, inventory in scenarios.items():
        engine.open_account(key, inventory.params.starting_balances)
    venue = BinanceVenue(engine, clock, credentials, Faults(faults, seed))
    hub = Hub(venue)
    app = web.Application()
    app[VENUE] = venue
    app[HUB] = hub
    first_tick = datetime.fromtimestamp(clock.now().timestamp() // tick_secs * tick_secs, UTC)
    app[_DRIVER] = Driver(engine, clock, default_feed(first_tick, seed, tick_secs),
                          scenarios if scenario else {})
    app.router.add_get("/private/ws", hub.user_data)
    app.router.add_get("/ws/{listen_key}", hub.user_data)
    app.router.add_get("/{channel}/ws/{stream}", hub.market)
    app.router.add_get("/sim/faults", _get_faults)
    app.router.add_post("/sim/faults", _set_faults)
    app.router.add_post("/sim/drop-websockets", _drop_websockets)
    app.router.add_route("*", "/{path:.*}", dispatch)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(app[_DRIVER].run(), name="binance-emulator-feed"),
             asyncio.create_task(app[HUB].publish(), name="binance-emulator-publish")]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _loopback_only(request: web.Request) -> None:
    if request.remote is None or not ip_address(request.remote).is_loopback:
        raise web.HTTPForbidden(text="control endpoints answer loopback clients only")


async def _get_faults(request: web.Request) -> web.Response:
    _loopback_only(request)
    return web.json_response(request.app[VENUE].faults.config.as_dict())


async def _set_faults(request: web.Request) -> web.Response:
    _loopback_only(request)
    faults = request.app[VENUE].faults
    try:
        changes = json.loads(await request.text() or "{}")
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object of fault settings")
        faults.config = faults.config.updated(changes)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(faults.config.as_dict())


async def _drop_websockets(request: web.Request) -> web.Response:
    _loopback_only(request)
    return web.json_response({"dropped": request.app[HUB].drop_all()})


@dataclass
class RunningServer:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def venue(self) -> BinanceVenue:
        return self.runner.app[VENUE]

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(host: str, port: int, credentials: Mapping[str, str], *, speed: float, seed: int,
                faults: FaultConfig = FaultConfig(), start: datetime | None = None, tick_secs: int = 30,
                scenario: bool = True) -> RunningServer:
    """Start the Binance dialect on `host:port` (0 picks a free port). Prints nothing."""
    app = build_app(credentials, speed=speed, seed=seed, faults=faults, start=start, tick_secs=tick_secs,
                    scenario=scenario)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return RunningServer(runner, host, next(address[1] for address in runner.addresses))
