"""A feed paced by its slowest account-event reader (`SimGateway(max_event_backlog=...)`): what the soak
benchmark drives the bot with. By default the feed waits for nobody (test_sim_gateway.py)."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, datetime

import pytest

from deltakeeper.ports import AccountEvent
from deltakeeper.sim import gateway as gateway_module
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import synthetic_feed
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.scenario import InventoryScenario, ScenarioParams

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
ACCOUNT = "sim"
STEPS = 60
MAX_BACKLOG = 4


def paced_gateway(emitted: list[AccountEvent]) -> SimGateway:
    """A finite feed whose scenario changes the inventory at every step (two snapshots each)."""
    engine = SimEngine(default_instruments(), seed=1)
    engine.subscribe(lambda _, event: emitted.append(event))
    feed = itertools.islice(synthetic_feed(start=START, price=100.0, tick_secs=60, seed=2), STEPS)
    scenario = InventoryScenario(ScenarioParams(step_secs=60, seed=3))
    return SimGateway(engine, feed, SimClock(math.inf, anchor_sim=START), scenario, ACCOUNT,
                      max_event_backlog=MAX_BACKLOG)


async def test_the_feed_stops_while_a_reader_is_behind_and_delivers_every_event_to_a_slow_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_module, "EVENT_QUEUE_SIZE", 8)  # unpaced, this reader would lose its stream
    emitted: list[AccountEvent] = []
    gateway = paced_gateway(emitted)
    events = gateway.account_events()

    for _ in range(10 * STEPS):  # nobody reads: the feed waits once the backlog is above the limit
        await asyncio.sleep(0)
    stalled_at = gateway.clock.now()
    assert not gateway.feed_done and gateway.feed_waits == 1
    assert MAX_BACKLOG < len(emitted) <= MAX_BACKLOG + 2

    received: list[AccountEvent] = []
    async with asyncio.timeout(5):
        async for event in events:  # slower than the feed: three turns of the loop per event
            received.append(event)
            for _ in range(3):
                await asyncio.sleep(0)
        await gateway.join()

    assert received == emitted and len(received) > 2 * STEPS - 10
    assert gateway.clock.now() > stalled_at and gateway.feed_waits > 1
    await gateway.close()
