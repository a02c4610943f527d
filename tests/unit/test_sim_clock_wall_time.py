"""The simulated clock's inverse: the wall time at which it reads a simulated time (what the Bybit emulator
stamps its events with)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deltakeeper.sim.clock import SimClock

WALL_START = datetime(2026, 1, 1, tzinfo=UTC)
SIM_START = datetime(2026, 3, 1, 16, tzinfo=UTC)


class FakeWall:
    def __init__(self) -> None:
        self.now = WALL_START

    def __call__(self) -> datetime:
        return self.now


def test_wall_time_is_when_the_clock_reads_a_simulated_time() -> None:
    wall = FakeWall()
    clock = SimClock(600, anchor_sim=SIM_START, wall=wall)
    wall.now = WALL_START + timedelta(seconds=10)
    assert clock.now() == SIM_START + timedelta(seconds=6000)
    assert clock.wall_time(clock.now()) == wall.now
    assert clock.wall_time(SIM_START + timedelta(hours=8)) == WALL_START + timedelta(seconds=48)


def test_as_fast_as_possible_the_simulated_time_stands_in() -> None:
    clock = SimClock(0, anchor_sim=SIM_START, wall=FakeWall())
    assert clock.wall_time(SIM_START + timedelta(hours=1)) == SIM_START + timedelta(hours=1)
