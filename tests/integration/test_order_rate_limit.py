"""An order and the exchange's rate-limit pause, through the real ccxt client against the Bybit emulator on
loopback: an order is never held in ccxt's throttle while a `Retry-After` pause holds (it would go out
on what changed meanwhile: a halt, a lost lock, a stale quote); it is refused at once with the time to
wait, and its sender checks again, after the pause, that it may still go."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from tests.integration.emulator_clients import KEY
from tests.integration.service_harness import until
from tests.order_sender import order_sender

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.errors import RateLimited
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, OrderType, Side, client_order_id
from deltakeeper.sim.bybit.server import RunningServer
from deltakeeper.sim.clock import WallClock

LINEAR = "BTC/USDT:USDT"
SELL = OrderRequest(client_order_id(4242), LINEAR, Side.SELL, Decimal("0.01"), OrderType.MARKET)

pytestmark = pytest.mark.timeout(60)


def set_faults(server: RunningServer, **faults: float) -> None:
    server.venue.faults.config = server.venue.faults.config.updated(faults)


class Journaled:
    def __init__(self) -> None:
        self.states: list[OrderState] = []

    async def update_order(self, state: OrderState) -> None:
        self.states.append(state)


async def test_an_order_refused_with_retry_after_is_not_sent_once_trading_halts_during_the_pause(
    emulator: RunningServer, exchange: CcxtExchange
) -> None:
    state = MarketState(await exchange.load_instruments())
    state.on_quote(await exchange.fetch_quote(LINEAR))
    journal = Journaled()
    orders = order_sender(exchange, journal, WallClock(), state, order_timeout_secs=5,
                          post_only_timeout_secs=5)
    arrivals = emulator.venue.rest_arrivals
    before = len(arrivals)
    set_faults(emulator, http_rate_limit=1, retry_after_ms=2000)
    sending = asyncio.create_task(orders.run(SELL, orders.basis(LINEAR, "BTC", Decimal(1))))
    await until(lambda: len(arrivals) > before, 10, "the order refused")
    set_faults(emulator, http_rate_limit=0)
    await asyncio.sleep(1.0)  # past the resend's own back-off (0.5 s), within the exchange's pause (2 s)
    orders.trading.halt("operator")  # an operator's halt, or the trader lock lost
    assert await sending is None

    assert not emulator.venue.executions(KEY)  # never sent again
    assert await exchange.fetch_order(LINEAR, SELL.client_order_id) is None
    [ended] = journal.states
    assert (ended.status, ended.reject_reason) == (OrderStatus.CANCELED, "halted before it was sent")


async def test_a_placement_while_a_rate_limit_pause_holds_is_refused_at_once_with_the_time_left(
    emulator: RunningServer, exchange: CcxtExchange
) -> None:
    arrivals = emulator.venue.rest_arrivals
    set_faults(emulator, http_rate_limit=1, retry_after_ms=2000)
    before = len(arrivals)
    reading = asyncio.create_task(exchange.fetch_open_orders())  # refused: every request held 2 s
    await until(lambda: len(arrivals) > before, 10, "the read refused")
    set_faults(emulator, http_rate_limit=0)
    await until(lambda: exchange._pause.remaining_secs() > 0, 10, "the pause read from the refusal")

    with pytest.raises(RateLimited) as refused:
        await exchange.place_order(SELL)
    assert refused.value.retry_after_secs is not None and 0 < refused.value.retry_after_secs <= 2
    assert len(arrivals) == before + 1  # the order never reached the exchange
    await reading  # the read waits the pause out, and is answered
    assert not emulator.venue.executions(KEY)
