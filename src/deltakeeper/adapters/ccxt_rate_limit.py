"""Pacing of the adapter's REST requests: ccxt's leaky bucket refilled by idle time too
(`RefillingBucket`), and the exchange's word on when to ask again after a rate-limit refusal
(`RateLimitPause`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from deltakeeper.domain.errors import RateLimited

PLACING: ContextVar[bool] = ContextVar("placing", default=False)
"""Set while `place_order` sends: a rate-limit pause refuses the order at once (`RefillingBucket`)."""


class RateLimitPause:
    """The exchange's word on when to ask again (`Retry-After`): every REST request of the adapter's
    clients waits until then (`RefillingBucket`), except an order, which is refused (RateLimited with the
    time still to wait): its sender checks again, after the wait, that the order still holds."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._resume_at = -math.inf

    def hold(self, secs: float) -> None:
        """No request before `secs` from now (a later hold already set stands)."""
        self._resume_at = max(self._resume_at, self._monotonic() + secs)

    def remaining_secs(self) -> float:
        return max(0.0, self._resume_at - self._monotonic())


class RefillingBucket:
    """ccxt's client-side rate limiter for REST requests, its leaky bucket (`tokenBucket`: the exchange's
    `rateLimit` and each endpoint's cost, as ccxt computes them), refilled by the time elapsed, idle time
    included. ccxt's own bucket refills only while a request waits in its queue, so after any idle time
    the next request still waited out the cost of the one before: 50 ms after a Bybit order, 100 ms
    after a read of cost 5.

    Requests go one at a time in the order they come, each once the bucket is not below zero; its cost is
    then taken (so the bucket may go below zero, as in ccxt), and a burst is spaced at the exchange's
    rate. ccxt calls it as `throttler(cost)` and may set a `loop` attribute on it, which is not used.
    While the exchange's `pause` holds (after a rate-limit refusal), no request goes: a read waits, an order
    is refused at once (never held in the queue, where it would go out on what has changed meanwhile)."""

    def __init__(
        self,
        bucket: Mapping[str, Any],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pause: RateLimitPause | None = None,
    ) -> None:
        self.tokens_per_sec = float(bucket["refillRate"]) * 1000
        self.capacity = float(bucket["capacity"])
        self.default_cost = float(bucket["cost"])
        self.tokens = self.capacity
        self._monotonic = monotonic
        self._sleep = sleep
        self._refilled_at = monotonic()
        self._turn = asyncio.Lock()
        self._pause = pause or RateLimitPause(monotonic)

    async def __call__(self, cost: float | None = None) -> None:
        await self._wait_out_pause()  # an order is refused before queueing behind the waiting reads
        async with self._turn:
            await self._wait_out_pause()
            owed = -self._refill()
            if owed > 0:
                await self._sleep(owed / self.tokens_per_sec)
                self._refill()
            self.tokens -= self.default_cost if cost is None else cost

    async def _wait_out_pause(self) -> None:
        while (paused_secs := self._pause.remaining_secs()) > 0:
            if PLACING.get():
                raise RateLimited(f"rate-limit pause: {paused_secs:.1f} s to go",
                                  retry_after_secs=paused_secs)
            await self._sleep(paused_secs)

    def _refill(self) -> float:
        now = self._monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._refilled_at) * self.tokens_per_sec)
        self._refilled_at = now
        return self.tokens

