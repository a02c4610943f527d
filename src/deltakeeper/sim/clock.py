"""Clocks (DESIGN.md 7): the wall clock, and a simulated clock that runs `speed` times faster.

Both satisfy `ports.Clock`. The simulated clock is anchored to the wall clock: by default it starts at the
wall time when it is made, so the exchange's event times read as recent dates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    return datetime.now(UTC)


class WallClock:
    speed = 1.0

    def now(self) -> datetime:
        return utc_now()


class SimClock:
    """Simulated time: `anchor_sim + (wall - anchor_wall) x speed`.

    A speed of 0 or infinity means as fast as possible: time then stands still between `advance_to`
    calls, which the driver of the feed makes with each quote's time. At a finite speed `advance_to` only
    ever moves the clock forward, so that it never reads earlier than the last quote delivered.
    """

    def __init__(
        self,
        speed: float,
        anchor_wall: datetime | None = None,
        anchor_sim: datetime | None = None,
        wall: Callable[[], datetime] = utc_now,
    ) -> None:
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
        self.speed = speed
        self._wall = wall
        self._anchor_wall = anchor_wall if anchor_wall is not None else wall()
        self._anchor_sim = anchor_sim if anchor_sim is not None else self._anchor_wall
        self._floor = self._anchor_sim

    @property
    def as_fast_as_possible(self) -> bool:
        return self.speed == 0 or math.isinf(self.speed)

    def now(self) -> datetime:
        if self.as_fast_as_possible:
            return self._floor
        elapsed_secs = (self._wall() - self._anchor_wall).total_seconds() * self.speed
        return max(self._floor, self._anchor_sim + timedelta(seconds=elapsed_secs))

    def wall_time(self, sim_time: datetime) -> datetime:
        """The wall time at which the clock reads (or read) `sim_time`: the inverse of `now`. As fast as
        possible there is no such time; the simulated time itself stands in."""
        if self.as_fast_as_possible:
            return sim_time
        return self._anchor_wall + (sim_time - self._anchor_sim) / self.speed

    def advance_to(self, sim_time: datetime) -> None:
        self._floor = max(self._floor, sim_time)

    def wall_secs_until(self, sim_time: datetime) -> float:
        """Wall seconds to wait before the simulated time reaches `sim_time` (0 when as fast as possible
        or already there)."""
        if self.as_fast_as_possible:
            return 0.0
        return max(0.0, (sim_time - self.now()).total_seconds() / self.speed)
