"""The Bybit v5 emulator as a library: `build_app` (an aiohttp application, for tests) and `serve` (bound
and running; the caller prints its `url`). REST and websockets share one port.

Each API key is an account of one simulated engine, opened at start with the default scenario's
balances; its inventory then moves on its own (`deltakeeper.sim.scenario`). Prices: the bundled SOL
history replayed from the simulated start, then a seeded random walk; BTC and ETH follow seeded random
walks; the quarterly futures listed at the simulated start are priced off them (`sim.futures`). The
simulated clock runs `speed` times faster than the wall clock and paces the market only:
authentication and every timestamp sent use the wall clock (`BybitVenue.stamp_ms`). The engine margins
and liquidates positions with the risk limits the emulator publishes (`serializers.RISK_TIERS`), and
reports its own figures on them (`positionIM`, `positionMM`, `liqPrice`).

Control endpoints: `deltakeeper.sim.emulator_app`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from deltakeeper.domain.instruments import Instrument
from deltakeeper.sim import emulator_app
from deltakeeper.sim.bybit.faults import FaultConfig, Faults
from deltakeeper.sim.bybit.rest import VENUE, dispatch
from deltakeeper.sim.bybit.serializers import MAINTENANCE_TIERS_USD
from deltakeeper.sim.bybit.venue import BybitVenue
from deltakeeper.sim.bybit.ws import Hub
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import Feed, bundled_bars, replay_feed, synthetic_feed, with_option_quotes
from deltakeeper.sim.futures import with_future_quotes
from deltakeeper.sim.markets import ASSETS, default_instruments, future_instruments, option_instruments
from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
DEFAULT_API_KEY = "dk-sim-key"
DEFAULT_API_SECRET = "dk-sim-secret"
SYNTHETIC_START_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0}
OPTION_SETTLE = "USDC"

HUB = web.AppKey("hub", Hub)


def default_feed(start: datetime, seed: int, tick_secs: int) -> Feed:
    """SOL: the bundled history from `start`, then a random walk from its last close; BTC and ETH: random
    walks. One stream of steps in time order."""
    bars = bundled_bars()
    sol = itertools.chain(
        replay_feed(bars, ASSETS["SOL"], tick_secs=tick_secs, seed=seed, start=start),
        synthetic_feed(ASSETS["SOL"], start=start + (bars[-1].ts - bars[0].ts) + timedelta(hours=1),
                       price=bars[-1].close, tick_secs=tick_secs, seed=seed),
    )
    walks = [synthetic_feed(ASSETS[base], start=start, price=price, tick_secs=tick_secs, seed=seed + i)
             for i, (base, price) in enumerate(SYNTHETIC_START_PRICES.items(), start=1)]
    return heapq.merge(sol, *walks, key=lambda step: step[0])


def usdc_options(start: datetime) -> dict[str, Instrument]:
    """Bybit's USDC options on BTC and ETH: calls and puts at five strikes around the starting price, 7 and
    30 days out (`sim.markets.option_instruments`)."""
    return {symbol: instrument for base, price in SYNTHETIC_START_PRICES.items()
            for symbol, instrument in option_instruments(base, start=start, price=price,
                                                         settle=OPTION_SETTLE).items()}


@dataclass
class Driver:
    """Moves the simulated market: quotes to the engine as the clock reaches them, then the scenarios."""

    engine: SimEngine
    clock: SimClock
    feed: Feed
    scenarios: dict[str, InventoryScenario]

    async def run(self) -> None:
        for sim_time, quotes in self.feed:
            await asyncio.sleep(self.clock.wall_secs_until(sim_time))
            self.clock.advance_to(sim_time)
            for quote in quotes:
                self.engine.on_quote(quote)
            for account, scenario in self.scenarios.items():
                scenario.advance(self.engine, account, sim_time)



def build_app(
    credentials: Mapping[str, str],
    *,
    speed: float,
    seed: int,
    allow_withdraw: bool = False,
    faults: FaultConfig = FaultConfig(),
    start: datetime | None = None,
    tick_secs: int = 30,
    scenario: bool = True,
    option_iv: float | None = None,
) -> web.Application:
    """The emulator's application; the market starts moving when the application starts. `start` is the
    simulated time at start (default: now). With `option_iv`, it also lists `usdc_options`, quoted at
    Black-76's value at that implied volatility (0.55 = 55%) with their greeks.

    Order, trade and funding ids are drawn from `seed` and the simulated start: a run started at another
    time has ids of its own, as an exchange's ids never repeat (a journal kept across emulator runs stores
    each fill by its id, and would take a repeated id for a fill it already has)."""
    clock = SimClock(speed, anchor_sim=start)
    ids_seed = seed * 1_000_003 + int((start or clock.now()).timestamp() * 1000)
    futures = future_instruments(start or clock.now())  # the quarterlies listed at start
    options = usdc_options(clock.now()) if option_iv is not None else {}
    engine = SimEngine({**default_instruments(), **futures, **options}, seed=ids_seed)
    engine.maintenance_tiers = MAINTENANCE_TIERS_USD  # the risk limits `/v5/market/risk-limit` publishes
    scenarios = {key: InventoryScenario(ScenarioParams(seed=seed + i)) for i, key in enumerate(credentials)}
    for key, inventory in scenarios.items():
        engine.open_account(key, inventory.params.starting_balances)
    venue = BybitVenue(engine, clock, credentials, Faults(faults, seed), allow_withdraw=allow_withdraw,
                       seed=ids_seed)
    hub = Hub(venue)
    app = web.Application()
    app[VENUE] = venue
    app[HUB] = hub
    # The feed starts on the tick at or before the clock's start, so that every market has a quote at once.
    first_tick = datetime.fromtimestamp(clock.now().timestamp() // tick_secs * tick_secs, UTC)
    feed = with_future_quotes(default_feed(first_tick, seed, tick_secs), futures)
    if option_iv is not None:
        feed = with_option_quotes(feed, options, vol=option_iv)
    driver = Driver(engine, clock, feed, scenarios if scenario else {})
    app.router.add_get("/v5/public/{channel}", hub.handle)
    app.router.add_get("/v5/private", hub.handle)
    emulator_app.add_controls(app, "bybit-emulator", venue.faults, hub, driver.run)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app


class RunningServer(emulator_app.RunningServer):
    @property
    def venue(self) -> BybitVenue:
        return self.runner.app[VENUE]


async def serve(
    host: str,
    port: int,
    credentials: Mapping[str, str],
    *,
    speed: float,
    seed: int,
    allow_withdraw: bool = False,
    faults: FaultConfig = FaultConfig(),
    start: datetime | None = None,
    tick_secs: int = 30,
    scenario: bool = True,
    option_iv: float | None = None,
) -> RunningServer:
    """Start the emulator on `host:port` (0 picks a free port, see `RunningServer.port`). Prints nothing."""
    app = build_app(credentials, speed=speed, seed=seed, allow_withdraw=allow_withdraw, faults=faults,
                    start=start, tick_secs=tick_secs, scenario=scenario, option_iv=option_iv)
    return await RunningServer.start(app, host, port)
