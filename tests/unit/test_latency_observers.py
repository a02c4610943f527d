"""The latency observers bootstrap hands to the app: the order path reports, for each order request sent
(none in shadow mode), the seconds from the quote it was sized from to its going out; the watched journal
reports every write's duration (a failed one's too) and counts the failures."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from decimal import Decimal as D

import pytest
from tests.unit.test_order_runner import REQUEST, T0, UnreachableAfterAccepting, runner

from deltakeeper.app.journal_writes import WatchedJournal
from deltakeeper.domain.errors import OrderNotSent
from deltakeeper.domain.orders import OrderRequest, OrderState
from deltakeeper.domain.records import OrderRecord


class ObservedWhenSent(UnreachableAfterAccepting):
    """Accepts the order, noting what had been observed when the request reached it."""

    def __init__(self, observed: list[float]) -> None:
        super().__init__()
        self.observed = observed
        self.observed_at_send: list[float] = []

    async def place_order(self, request: OrderRequest) -> OrderState:
        self.observed_at_send = list(self.observed)
        return await super().place_order(request)


class Shadow:
    """The shadow-mode exchange's order path: nothing is sent."""

    async def place_order(self, request: OrderRequest) -> OrderState:
        raise OrderNotSent("shadow mode")


class NoJournal:
    async def update_order(self, state: OrderState) -> None:
        pass


async def test_an_order_request_reports_the_seconds_since_its_quote_arrived_as_it_goes_out() -> None:
    observed: list[float] = []
    exchange = ObservedWhenSent(observed)
    orders = runner(exchange, NoJournal())  # type: ignore[arg-type]
    orders.observe_tick_to_order_secs = observed.append
    basis = orders.basis(REQUEST.symbol, "BTC", D(1))
    basis = dataclasses.replace(basis, received_at=time.monotonic() - 2.0)  # the quote arrived 2 s ago
    sending = asyncio.create_task(orders.run(REQUEST, basis))
    await asyncio.sleep(0.05)  # sent
    orders.draining = True  # settle no further than the cancel
    await asyncio.wait_for(sending, 5)
    [secs] = observed
    assert exchange.observed_at_send == []  # measured as the request went out, reported once it was sent
    assert secs >= 2.0


async def test_an_order_not_sent_in_shadow_mode_reports_no_tick_to_order_time() -> None:
    observed: list[float] = []
    orders = runner(Shadow(), NoJournal())  # type: ignore[arg-type]
    orders.observe_tick_to_order_secs = observed.append

    ended = await orders.run(REQUEST, orders.basis(REQUEST.symbol, "BTC", D(1)))

    assert ended is not None and not ended.sent
    assert observed == []


class SlowJournal:
    """The journal port: each write takes `write_secs` on the injected clock; `fail` makes them raise."""

    def __init__(self, clock: list[float], write_secs: float) -> None:
        self.clock, self.write_secs = clock, write_secs
        self.fail = False

    async def record_order(self, order: OrderRecord) -> None:
        self.clock[0] += self.write_secs
        if self.fail:
            raise OSError("database or disk is full")


async def test_every_journal_write_reports_its_duration_and_a_failed_one_counts() -> None:
    clock = [100.0]
    journal = SlowJournal(clock, write_secs=0.25)
    watched = WatchedJournal(journal, monotonic=lambda: clock[0])  # type: ignore[arg-type]
    observed: list[float] = []
    watched.observe_write_secs = observed.append
    order = OrderRecord.pending(REQUEST, 1, T0, D(60_000), "BTC")

    await watched.record_order(order)
    journal.fail = True
    with pytest.raises(OSError):
        await watched.record_order(order)
    assert observed == [0.25, 0.25]
    assert watched.write_failures == 1
    journal.fail = False
    await watched.record_order(order)
    assert watched.write_failures == 1 and len(observed) == 3
