"""The exchanges the service trades on, built from settings (part of the composition root, bootstrap.py):
the simulated exchange, paper trading on live public data, or a ccxt exchange."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from deltakeeper.config import Mode, Settings
from deltakeeper.domain.errors import ConfigError
from deltakeeper.ports import Clock, Exchange
from deltakeeper.stopping import EXCHANGE_REQUEST_TIMEOUT_SECS

__all__ = ["RALLY_BALANCES", "build_exchange", "build_paper_exchange", "build_sim_exchange", "ccxt_config"]


def build_sim_exchange(settings: Settings, account_id: str = "sim") -> tuple[Exchange, Clock]:
    """The simulated exchange (its perpetuals, and the quarterlies listed at the start priced off spot): the
    bundled SOL history replayed from now on the simulated clock, then a seeded random walk from where it
    ends; the market-maker scenario moves the spot inventory. The rally
    scenario instead starts 1,000 SOL and 11,000 USDT on `sim.feeds.rally_feed` from 100 USDT: the
    short perp that hedges the SOL runs out of margin about five simulated hours in."""
    import itertools

    from deltakeeper.sim.clock import SimClock
    from deltakeeper.sim.engine import SimEngine
    from deltakeeper.sim.feeds import bundled_bars, replay_feed, synthetic_feed
    from deltakeeper.sim.futures import with_future_quotes
    from deltakeeper.sim.gateway import SimGateway
    from deltakeeper.sim.markets import default_instruments, future_instruments
    from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

    clock = SimClock(settings.sim_speed)
    bars = bundled_bars()
    tick_secs = int(settings.sim_tick_secs)
    replay = replay_feed(bars, tick_secs=tick_secs, seed=settings.sim_seed, start=clock.now())
    history_secs = (bars[-1].ts - bars[0].ts).total_seconds()
    continuation = synthetic_feed(
        start=clock.now() + timedelta(seconds=history_secs + 3600),
        price=bars[-1].close,
        tick_secs=tick_secs,
        seed=settings.sim_seed,
    )
    scenario = None
    if settings.sim_scenario == "market-maker":
        scenario = InventoryScenario(ScenarioParams(seed=settings.sim_seed))
    # Ids come from the engine's seeded generator: mix in the start so that a second run on the same
    # journal does not repeat the first run's trade ids (which the journal would take as duplicates).
    engine_seed = settings.sim_seed * 1_000_003 + int(clock.now().timestamp())
    futures = future_instruments(clock.now())  # the quarterlies listed at the start, priced off spot
    engine = SimEngine({**default_instruments(), **futures}, seed=engine_seed)
    if settings.sim_scenario == "rally":
        from deltakeeper.sim.feeds import rally_feed

        engine.open_account(account_id, RALLY_BALANCES)
        feed = rally_feed(start=clock.now(), price=100.0, tick_secs=tick_secs, seed=settings.sim_seed)
        return SimGateway(engine, with_future_quotes(feed, futures), clock, None, account_id), clock
    feed = with_future_quotes(itertools.chain(replay, continuation), futures)
    gateway = SimGateway(engine, feed, clock, scenario, account_id)
    return gateway, clock


RALLY_BALANCES = {"SOL": Decimal(1000), "USDT": Decimal(11_000)}
"""The rally scenario's account: enough for a 10x short perpetual of 1,000 SOL."""


def build_paper_exchange(settings: Settings) -> tuple[Exchange, Clock]:
    """Paper trading: the simulated engine on `DK_EXCHANGE`'s live public data (no key), on the wall clock,
    its account opened with the simulator's portfolio (`DK_SIM_SCENARIO=rally`: the rally's; otherwise the
    market maker's starting one), which then moves only by its own trades and funding."""
    if settings.exchange == "sim":
        raise ConfigError("DK_EXCHANGE", "a ccxt exchange id whose live prices paper trading follows", "sim")
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange
    from deltakeeper.sim.clock import WallClock
    from deltakeeper.sim.paper import PaperGateway
    from deltakeeper.sim.scenario import ScenarioParams

    clock = WallClock()
    public = CcxtExchange(settings.exchange, clock=clock, base_url=settings.exchange_url,
                          sandbox=settings.sandbox, stale_after_secs=settings.stale_secs,
                          request_timeout_secs=EXCHANGE_REQUEST_TIMEOUT_SECS)
    balances = RALLY_BALANCES if settings.sim_scenario == "rally" else ScenarioParams().starting_balances
    seed = settings.sim_seed * 1_000_003 + int(clock.now().timestamp())  # ids never repeat across runs
    return PaperGateway(public, clock, balances, stale_after_secs=settings.stale_secs, seed=seed), clock


def build_exchange(settings: Settings) -> tuple[Exchange, Clock]:
    if settings.mode is Mode.PAPER:
        return build_paper_exchange(settings)
    if settings.exchange == "sim":
        return build_sim_exchange(settings)
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange
    from deltakeeper.sim.clock import WallClock

    clock = WallClock()
    exchange = CcxtExchange(
        settings.exchange,
        api_key=settings.secret("api_key"),
        secret=settings.secret("api_secret"),
        password=settings.secret("api_password"),
        base_url=settings.exchange_url,
        sandbox=settings.sandbox,
        clock=clock,
        stale_after_secs=settings.stale_secs,
        request_timeout_secs=EXCHANGE_REQUEST_TIMEOUT_SECS,
        ccxt_config=ccxt_config(settings),
    )
    return exchange, clock


def ccxt_config(settings: Settings) -> dict[str, Any]:
    """What the settings add to the ccxt client's configuration: Binance's portfolio margin account
    (DK_EXCHANGE_PORTFOLIO_MARGIN) is ccxt's `portfolioMargin` option."""
    if settings.exchange_portfolio_margin:
        return {"options": {"portfolioMargin": True}}
    return {}
