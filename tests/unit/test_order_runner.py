"""The order life cycle while stopping: an order the exchange never settles does not hold the stop, and is
left as it stands (never taken for not found) to the next start's reconciliation."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D

from tests.instruments import LINEAR_WHOLE
from tests.order_sender import order_sender

from deltakeeper.app.market_state import MarketState
from deltakeeper.app.orders import OrderSender
from deltakeeper.domain.errors import ExchangeUnavailable, OrderOutcomeUnknown
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, OrderType, Quote, Side
from deltakeeper.sim.clock import SimClock

T0 = datetime(2026, 1, 5, tzinfo=UTC)
REQUEST = OrderRequest("dk1", LINEAR_WHOLE.symbol, Side.SELL, D(5), OrderType.LIMIT, D(60_000))


class UnreachableAfterAccepting:
    """The exchange port: takes the order, then answers nothing about it (no state, no cancel)."""

    def __init__(self) -> None:
        self.cancels = 0

    async def place_order(self, request: OrderRequest) -> OrderState:
        return OrderState(request.client_order_id, "x1", request.symbol, request.side,
                          request.amount_contracts, D(0), OrderStatus.OPEN, T0,
                          order_type=request.order_type, price=request.price)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        raise ExchangeUnavailable("connection refused")

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        self.cancels += 1
        raise ExchangeUnavailable("connection refused")

    async def fetch_account(self) -> None:
        raise ExchangeUnavailable("connection refused")


class LostAnswerThenUnreachable(UnreachableAfterAccepting):
    """Takes the order, loses the answer, then answers nothing about it."""

    async def place_order(self, request: OrderRequest) -> OrderState:
        await super().place_order(request)
        raise OrderOutcomeUnknown("request timed out")


class Journaled:
    """The journal port: what it was told of the order."""

    def __init__(self) -> None:
        self.states: list[OrderState] = []

    async def update_order(self, state: OrderState) -> None:
        self.states.append(state)


class LandsAfterItsCancel:
    """The exchange port: loses the answer to the order, which reaches the book only just after the first
    cancel (which finds nothing to cancel)."""

    def __init__(self) -> None:
        self.cancels = 0
        self.book: dict[str, OrderState] = {}

    async def place_order(self, request: OrderRequest) -> OrderState:
        raise OrderOutcomeUnknown("request timed out")

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return self.book.get(client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        self.cancels += 1
        state = self.book.get(client_order_id)
        if state is None:  # nothing to cancel yet: then it lands
            self.book[client_order_id] = OrderState(client_order_id, "x1", symbol, REQUEST.side,
                                                    REQUEST.amount_contracts, D(0), OrderStatus.OPEN, T0,
                                                    order_type=REQUEST.order_type, price=REQUEST.price)
        else:
            self.book[client_order_id] = replace(state, status=OrderStatus.CANCELED)

    async def fetch_account(self) -> None:
        raise ExchangeUnavailable("connection refused")


def runner(exchange: object, journal: Journaled, order_timeout_secs: float = 0.3,
           post_only_timeout_secs: float = 0.3) -> OrderSender:
    state = MarketState({LINEAR_WHOLE.symbol: LINEAR_WHOLE})
    state.on_quote(Quote(LINEAR_WHOLE.symbol, D(59_999), D(60_001), D(60_000), T0))
    return order_sender(exchange, journal, SimClock(1, anchor_sim=T0), state,
                        order_timeout_secs=order_timeout_secs, post_only_timeout_secs=post_only_timeout_secs,
                        price_collar_bps=D(100))


async def test_while_stopping_an_order_not_final_after_its_cancel_is_left_to_reconciliation() -> None:
    exchange, journal = UnreachableAfterAccepting(), Journaled()
    orders = runner(exchange, journal)
    task = asyncio.create_task(orders.run(REQUEST, orders.basis(REQUEST.symbol, "BTC", D(1))))
    await asyncio.sleep(0.05)  # sent: the stop begins while it settles
    orders.draining = True
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the stop waited on an order the exchange never settled"
    assert exchange.cancels == 1
    assert [s.status for s in journal.states] == [OrderStatus.OPEN]  # still open in the journal


async def test_while_trading_an_unsettled_order_is_polled_on_and_its_failed_cancel_sent_again() -> None:
    exchange, journal = UnreachableAfterAccepting(), Journaled()
    orders = runner(exchange, journal)
    task = asyncio.create_task(orders.run(REQUEST, orders.basis(REQUEST.symbol, "BTC", D(1))))
    done, _ = await asyncio.wait([task], timeout=2)
    assert not done and exchange.cancels == 2  # a failed cancel is no cancel: sent again, backing off
    task.cancel()


async def test_while_stopping_an_order_of_unknown_outcome_whose_look_ups_fail_is_left_unknown() -> None:
    exchange, journal = LostAnswerThenUnreachable(), Journaled()
    orders = runner(exchange, journal)
    task = asyncio.create_task(orders.run(REQUEST, orders.basis(REQUEST.symbol, "BTC", D(1))))
    await asyncio.sleep(0.05)  # sent: the stop begins while it settles
    orders.draining = True
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the stop waited on an order the exchange never settled"
    # a failed look-up is no answer: the next start's reconciliation settles it, never "rejected" here
    assert [s.status for s in journal.states] == [OrderStatus.UNKNOWN]


async def test_a_post_only_order_of_unknown_outcome_that_lands_after_its_cancel_is_cancelled_again() -> None:
    exchange, journal = LandsAfterItsCancel(), Journaled()
    orders = runner(exchange, journal, order_timeout_secs=5, post_only_timeout_secs=0.1)
    request = replace(REQUEST, post_only=True)
    ended = await asyncio.wait_for(orders.run(request, orders.basis(REQUEST.symbol, "BTC", D(1))), 5)
    assert ended is not None and ended.state.status is OrderStatus.CANCELED
    assert exchange.cancels == 2
    assert ended.falls_back  # cancelled by its own timeout: the rest goes as a market order
