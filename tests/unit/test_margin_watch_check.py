"""The scheduled margin check (`MarginWatch.__call__`): the bot's own margin decides REDUCE_ONLY whatever
the venue's informational read does, and a margin that cannot be estimated leaves the `margin_low` breach
as it is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import cast

from structlog.testing import capture_logs

from deltakeeper.app.margin_watch import MARGIN_LOW, MarginWatch
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import Core
from deltakeeper.app.venue_margin import VenueMarginView
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.records import AccountSnapshot, DecisionRecord
from deltakeeper.domain.risk import TradingState
from deltakeeper.domain.venue_margin import AccountMode, VenueMargin
from deltakeeper.ports import Alerts, Exchange, Journal
from deltakeeper.sim.clock import SimClock

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SOL = Instrument("SOL/USDT:USDT", Kind.PERPETUAL, "SOL", "USDT", "USDT", lot_step_contracts=D("0.1"))
CALL = Instrument("BTC/USD:BTC-260204-60000-C", Kind.OPTION, "BTC", "USD", "BTC", strike=D(60_000),
                  option_type="call", expiry=T0 + timedelta(days=30))
CLEAR_SECS = 300.0


class Venue:
    """An exchange whose account margin read raises what the ccxt method of an exchange lacking it raises."""

    def __init__(self) -> None:
        self.reads = 0

    async def fetch_account_margin(self) -> None:
        self.reads += 1
        raise RuntimeError("fetchAccountMargin() is not supported")


class SlowVenue:
    """An exchange whose account margin read answers only once `answer` is set."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()

    async def fetch_account_margin(self) -> VenueMargin:
        await self.answer.wait()
        return VenueMargin(AccountMode.STANDARD, T0)


class DecisionJournal:
    def __init__(self) -> None:
        self.decisions: list[DecisionRecord] = []

    async def record_decision(self, record: DecisionRecord) -> None:
        self.decisions.append(record)


class SentAlerts:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.sent.append(event)


class Ticks:
    def __init__(self) -> None:
        self.secs = 0.0

    def __call__(self) -> float:
        return self.secs


def low_margin_state() -> MarketState:
    """10 SOL short at 150 USD on 6.5 USDT: the headroom far below the critical 15%."""
    state = MarketState({SOL.symbol: SOL, CALL.symbol: CALL}, {}, {"SOL": SOL.symbol})
    state.on_quote(Quote(SOL.symbol, D(149), D(151), D(150), T0))
    state.on_account(AccountSnapshot({"USDT": D("6.5")}, (Position(SOL.symbol, D(-10), D(150), D(150)),), T0))
    return state


def margin_watch(
    state: MarketState, clock: SimClock, journal: DecisionJournal, exchange: object
) -> MarginWatch:
    alerts = cast(Alerts, SentAlerts())
    core = Core.new(alerts, CLEAR_SECS)
    return MarginWatch(state, cast(Exchange, exchange), clock, cast(Journal, journal), alerts, core.trading,
                       core.counters, core.decisions, {})


async def test_a_venue_read_that_raises_neither_skips_the_margin_check_nor_stops_the_start() -> None:
    clock = SimClock(0, anchor_sim=T0)
    journal = DecisionJournal()
    venue = Venue()
    watch = margin_watch(low_margin_state(), clock, journal, venue)
    ticks = Ticks()
    watch.venue = VenueMarginView(cast(Exchange, venue), clock, refresh_secs=60, monotonic=ticks)

    with capture_logs() as logs:
        start = await watch.venue.refresh()  # the start's read: contained
        headroom = await watch()

    assert start.mode is AccountMode.UNKNOWN
    assert start.detail == "RuntimeError: fetchAccountMargin() is not supported"
    assert headroom is not None and headroom < 0.15
    assert watch.trading.state is TradingState.REDUCE_ONLY and watch.trading.cause == MARGIN_LOW
    assert watch.critical
    assert venue.reads == 1  # the failed read was stamped: not read again before it is due
    events = [e["event"] for e in logs if e["event"].startswith("account_margin")]
    assert events == ["account_margin_mode_unknown"]
    ticks.secs = 60
    await watch()
    assert venue.reads == 2 and watch.venue.last is not None and watch.venue.last.mode is AccountMode.UNKNOWN


async def test_a_slow_venue_read_does_not_delay_reduce_only() -> None:
    clock = SimClock(0, anchor_sim=T0)
    venue = SlowVenue()
    watch = margin_watch(low_margin_state(), clock, DecisionJournal(), venue)
    watch.venue = VenueMarginView(cast(Exchange, venue), clock)

    check = asyncio.create_task(watch())
    await asyncio.sleep(0)  # the check runs up to the venue's read
    assert watch.trading.state is TradingState.REDUCE_ONLY and not check.done()
    venue.answer.set()
    assert (await check) is not None and watch.venue.last is not None
    assert watch.venue.last.mode is AccountMode.STANDARD


async def test_an_unknown_margin_neither_sets_nor_clears_the_margin_low_breach() -> None:
    clock = SimClock(0, anchor_sim=T0)
    state = low_margin_state()
    watch = margin_watch(state, clock, DecisionJournal(), object())
    await watch()
    assert watch.trading.state is TradingState.REDUCE_ONLY

    # a short BTC call while BTC has no price: the margin cannot be estimated
    unpriced = Position(CALL.symbol, D(-1), D("0.05"), D("0.05"), delta=D("0.4"))
    state.on_account(AccountSnapshot({"USDT": D("6.5"), "BTC": D(0)}, (unpriced,), T0 + timedelta(seconds=1)))
    for step in range(3):
        clock.advance_to(T0 + timedelta(seconds=(step + 1) * CLEAR_SECS))
        assert await watch() is None and watch.margin() is None
    assert watch.trading.state is TradingState.REDUCE_ONLY and watch.trading.cause == MARGIN_LOW

    # a margin known again and above the critical level clears it, with the hysteresis
    state.on_account(AccountSnapshot({"USDT": D(100_000)}, (Position(SOL.symbol, D(-10), D(150), D(150)),),
                                     T0 + timedelta(seconds=2)))
    for step in range(2):
        clock.advance_to(T0 + timedelta(seconds=(step + 4) * CLEAR_SECS))
        await watch()
    assert watch.trading.state is TradingState.ACTIVE
