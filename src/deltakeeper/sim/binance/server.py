"""The Binance USD-M dialect of the emulator as a library: `build_app` (an aiohttp application) and
`serve` (bound and running). The market, the accounts and their scenarios are the Bybit dialect's
(`deltakeeper.sim.bybit.server`), the control endpoints both dialects' (`deltakeeper.sim.emulator_app`);
only the wire protocol differs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from deltakeeper.sim import emulator_app
from deltakeeper.sim.binance.rest import VENUE, dispatch
from deltakeeper.sim.binance.venue import BinanceVenue
from deltakeeper.sim.binance.ws import Hub
from deltakeeper.sim.bybit.faults import FaultConfig, Faults
from deltakeeper.sim.bybit.serializers import MAINTENANCE_TIERS_USD
from deltakeeper.sim.bybit.server import Driver, default_feed
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

HUB = web.AppKey("binance_hub", Hub)


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
    driver = Driver(engine, clock, default_feed(first_tick, seed, tick_secs),
                    scenarios if scenario else {})
    app.router.add_get("/private/ws", hub.user_data)
    app.router.add_get("/ws/{listen_key}", hub.user_data)
    app.router.add_get("/{channel}/ws/{stream}", hub.market)
    emulator_app.add_controls(app, "binance-emulator", venue.faults, hub, driver.run)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app


class RunningServer(emulator_app.RunningServer):
    @property
    def venue(self) -> BinanceVenue:
        return self.runner.app[VENUE]


async def serve(host: str, port: int, credentials: Mapping[str, str], *, speed: float, seed: int,
                faults: FaultConfig = FaultConfig(), start: datetime | None = None, tick_secs: int = 30,
                scenario: bool = True) -> RunningServer:
    """Start the Binance dialect on `host:port` (0 picks a free port). Prints nothing."""
    app = build_app(credentials, speed=speed, seed=seed, faults=faults, start=start, tick_secs=tick_secs,
                    scenario=scenario)
    return await RunningServer.start(app, host, port)
