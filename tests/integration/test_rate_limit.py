"""The adapter's client-side rate limiter (`RefillingBucket`): Bybit's rateLimit (20 ms per unit of
cost) and endpoint costs, on a clock that moves only when the test or the limiter's own sleep moves it;
then on the real ccxt client placing orders on the Bybit emulator."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from deltakeeper.adapters.ccxt_exchange import CcxtExchange, RateLimitPause, RefillingBucket
from deltakeeper.domain.orders import OrderRequest, Side
from deltakeeper.sim.bybit.server import RunningServer, serve

KEY, SECRET = "dk-test-key", "dk-test-secret"
BYBIT_BUCKET = {"refillRate": 1 / 20, "capacity": 1, "cost": 1}
"""ccxt's tokenBucket for Bybit: rateLimit 20 ms, so one unit of cost per 20 ms."""
ORDER_COST = 2.5
"""ccxt's cost of Bybit's v5/order/create: 50 ms of the rate."""

pytestmark = pytest.mark.timeout(60)


class ManualClock:
    """Monotonic seconds that move when `advance` or the limiter's `sleep` is called."""

    def __init__(self) -> None:
        self.now_secs = 100.0
        self.slept_secs: list[float] = []

    def monotonic(self) -> float:
        return self.now_secs

    def advance(self, secs: float) -> None:
        self.now_secs += secs

    async def sleep(self, secs: float) -> None:
        self.slept_secs.append(secs)
        self.now_secs += secs
        await asyncio.sleep(0)


def bucket(clock: ManualClock) -> RefillingBucket:
    return RefillingBucket(BYBIT_BUCKET, clock.monotonic, clock.sleep)


async def request_times(
        limiter: RefillingBucket, clock: ManualClock, costs: list[float | None]) -> list[float]:
    """The clock's time at which each request, all made at once, was let through, in the order made."""
    let_through: dict[int, float] = {}

    async def request(index: int, cost: float | None) -> None:
        await limiter(cost)
        let_through[index] = clock.monotonic()

    await asyncio.gather(*(request(index, cost) for index, cost in enumerate(costs)))
    return [let_through[index] for index in range(len(costs))]


async def test_a_burst_is_spaced_at_the_exchange_rate_in_the_order_it_came() -> None:
    clock = ManualClock()
    limiter = bucket(clock)
    start = clock.monotonic()

    times = await request_times(limiter, clock, [ORDER_COST, 5, ORDER_COST, None, ORDER_COST])

    # The first goes at once (the bucket is full: one unit), each next one once what the ones before it
    # took beyond that unit has been paid back, at 20 ms per unit.
    owed_units = [0, ORDER_COST - 1, ORDER_COST - 1 + 5, ORDER_COST - 1 + 5 + ORDER_COST,
                  ORDER_COST - 1 + 5 + ORDER_COST + 1]
    assert [round((t - start) * 1000, 6) for t in times] == [units * 20 for units in owed_units]


async def test_idle_time_refills_the_bucket_so_the_next_request_does_not_wait() -> None:
    clock = ManualClock()
    limiter = bucket(clock)
    await limiter(5)  # a read of cost 5: the bucket owes 4 units, 80 ms
    clock.advance(0.5)

    await limiter(ORDER_COST)

    assert clock.slept_secs == []


async def test_a_request_after_a_short_idle_waits_only_for_what_is_still_owed() -> None:
    clock = ManualClock()
    limiter = bucket(clock)
    await limiter(5)  # owes 4 units: 80 ms
    clock.advance(0.030)
    start = clock.monotonic()

    await limiter(ORDER_COST)

    assert clock.monotonic() - start == pytest.approx(0.050)


async def test_idle_time_refills_no_more_than_the_capacity() -> None:
    clock = ManualClock()
    limiter = bucket(clock)
    clock.advance(3600)
    start = clock.monotonic()

    times = await request_times(limiter, clock, [ORDER_COST, ORDER_COST, ORDER_COST])

    assert [round((t - start) * 1000, 6) for t in times] == [0, 30, 80]


async def test_a_cancelled_request_takes_nothing_from_the_bucket() -> None:
    clock = ManualClock()
    limiter = bucket(clock)
    await limiter(ORDER_COST)
    waiting = asyncio.create_task(limiter(ORDER_COST))
    await asyncio.sleep(0)
    waiting.cancel()  # while it waits for the first one's cost to be paid back
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.advance(0.050 - sum(clock.slept_secs))  # 50 ms after the first: the bucket is full again

    await limiter(ORDER_COST)

    assert clock.monotonic() - 100.0 == pytest.approx(0.050)


async def test_a_held_pause_keeps_every_bucket_sharing_it_waiting_until_it_ends() -> None:
    clock = ManualClock()
    pause = RateLimitPause(clock.monotonic)
    private = RefillingBucket(BYBIT_BUCKET, clock.monotonic, clock.sleep, pause)
    public = RefillingBucket(BYBIT_BUCKET, clock.monotonic, clock.sleep, pause)
    await private(ORDER_COST)
    clock.advance(1.0)
    pause.hold(7.0)  # a refusal said: retry after 7 s
    held_at = clock.monotonic()
    pause.hold(2.0)  # a shorter wait named later leaves the longer one standing

    times = await asyncio.gather(request_times(private, clock, [None]), request_times(public, clock, [5]))

    assert min(t for [t] in times) >= held_at + 7.0
    assert pause.remaining_secs() == 0


# -- on the real ccxt client ---------------------------------------------------------------------------------

class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=600, seed=7, scenario=False)
    yield server
    await server.close()


def adapter(server: RunningServer) -> CcxtExchange:
    return CcxtExchange("bybit", clock=WallClock(), api_key=KEY, secret=SECRET, base_url=server.url,
                        rng=random.Random(1))


async def test_the_adapter_limits_both_ccxt_clients_with_the_exchange_bucket(emulator: RunningServer) -> None:
    exchange = adapter(emulator)
    try:
        for client in (exchange._rest, exchange._public):
            limiter = client.throttler
            assert isinstance(limiter, RefillingBucket)
            assert limiter.tokens_per_sec == pytest.approx(1000 / client.rateLimit)
            assert (limiter.capacity, limiter.default_cost) == (1, 1)
    finally:
        await exchange.close()


async def test_orders_through_ccxt_pay_the_endpoint_cost_and_not_after_idle_time(
        emulator: RunningServer) -> None:
    exchange = adapter(emulator)
    clock = ManualClock()
    exchange._rest.throttler = RefillingBucket(exchange._rest.tokenBucket, clock.monotonic, clock.sleep)
    try:
        await exchange.load_instruments()
        orders = (OrderRequest(f"dkrate{n}a0", "BTC/USDT:USDT", Side.BUY, Decimal("0.01")) for n in range(4))
        await exchange.place_order(next(orders))  # the first also reads the account's mode (ccxt)
        await exchange.place_order(next(orders))
        clock.slept_secs.clear()

        await exchange.place_order(next(orders))  # right after the last one: its cost is paid first
        back_to_back = sum(clock.slept_secs)
        clock.slept_secs.clear()
        clock.advance(1.0)
        await exchange.place_order(next(orders))  # after a second of idle time: at once

        assert back_to_back == pytest.approx(ORDER_COST * 0.020)
        assert clock.slept_secs == []
    finally:
        await exchange.close()
