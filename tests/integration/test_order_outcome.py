"""An order whose answer is lost and whose look-ups then fail, through the real ccxt client against the
Bybit emulator on loopback and a real journal: the order stays unsettled (never taken for "not found")
until the exchange answers, and is settled by its client id, sent once. And the same at a start's
reconciliation, on the simulated exchange."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from tests.order_sender import EventAlerts, order_sender

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.adapters.journal import create_journal, upgrade
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.reconciliation import reconcile
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, Quote, Side
from deltakeeper.domain.records import OrderRecord
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.clock import SimClock, WallClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments

KEY, SECRET = "dk-test-key", "dk-test-secret"
BTC_PERP = "BTC/USDT:USDT"
SOL_PERP = "SOL/USDT:USDT"
ORDER_TIMEOUT_SECS = 0.3

pytestmark = pytest.mark.timeout(60)


def set_faults(server: RunningServer, **changes: Any) -> None:
    """The emulator's in-process fault switch (what `POST /sim/faults` sets)."""
    server.venue.faults.config = server.venue.faults.config.updated(changes)


async def until(condition: Callable[[], bool], what: str, timeout_secs: float = 10) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_an_order_of_unknown_outcome_is_settled_filled_once_its_failing_look_ups_answer(
    database_url: str,
) -> None:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=600, seed=7, scenario=False)
    clock = WallClock()
    exchange = CcxtExchange("bybit", clock=clock, api_key=KEY, secret=SECRET, base_url=server.url,
                            request_timeout_secs=0.5, backoff_initial_secs=0.05, backoff_max_secs=0.5,
                            rng=random.Random(1))
    await asyncio.to_thread(upgrade, database_url)
    journal = create_journal(database_url)
    recorded = EventAlerts()
    alerts = recorded.events
    try:
        state = MarketState(await exchange.load_instruments())
        quote = server.venue.engine.quote(BTC_PERP)
        assert quote is not None
        state.on_quote(replace(quote, ts=clock.now()))
        runner = order_sender(exchange, journal, clock, state, order_timeout_secs=ORDER_TIMEOUT_SECS,
                              post_only_timeout_secs=ORDER_TIMEOUT_SECS, alerts=recorded)
        request = OrderRequest("dklost1a0", BTC_PERP, Side.BUY, Decimal("0.01"))
        await journal.record_order(OrderRecord.pending(request, 1, clock.now(), quote.mark, "BTC"))

        def on_exchange() -> list[str]:
            return [o.client_order_id or "" for o in server.venue.engine.orders(KEY)]

        set_faults(server, timeout_after_accept=1, hang_ms=1000)  # accepted, the answer never comes
        task = asyncio.create_task(runner.run(request, runner.basis(BTC_PERP, "BTC", Decimal(1))))
        await until(lambda: request.client_order_id in on_exchange(), "the order to reach the exchange")
        set_faults(server, timeout_after_accept=0, server_error=1)  # then every look-up answers 503

        async def journaled() -> str:
            [order] = await journal.list_orders()
            return str(order["status"])

        await until(lambda: "order_outcome_unknown" in alerts, "the placement to time out")
        await asyncio.sleep(4 * ORDER_TIMEOUT_SECS)  # look-ups fail well past the time to land
        assert not task.done()
        assert await journaled() == "unknown"

        set_faults(server, server_error=0)
        ended = await asyncio.wait_for(task, 20)
        assert ended is not None and ended.state.status is OrderStatus.FILLED
        assert await journaled() == "filled"
        assert on_exchange() == [request.client_order_id]  # sent once
        assert "order_unsettled" in alerts
    finally:
        await exchange.close()
        await journal.close()
        await server.close()


class LookUpsFailing(SimGateway):
    """The simulated exchange, with its order look-ups failing while `failing` is set."""

    failing = True

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        if self.failing:
            raise ExchangeUnavailable("503 Service Temporarily Unavailable")
        return await super().fetch_order(symbol, client_order_id)


async def test_reconciliation_takes_a_failed_look_up_of_an_unknown_order_for_no_answer(
    database_url: str,
) -> None:
    # The bot stopped with an order of unknown outcome (it had filled); at the next start the look-ups fail.
    clock = SimClock(1)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": Decimal(10_000)})
    engine.on_quote(Quote(SOL_PERP, Decimal(100), Decimal("100.1"), Decimal("100.05"), clock.now()))
    gateway = LookUpsFailing(engine, iter(()), clock, None, "sim")
    request = OrderRequest("dkleft1a0", SOL_PERP, Side.BUY, Decimal(1))
    await asyncio.to_thread(upgrade, database_url)
    journal = create_journal(database_url)
    try:
        await journal.record_order(OrderRecord.pending(request, 1, clock.now(), Decimal(100), "SOL"))
        placed = await gateway.place_order(request)
        await journal.update_order(replace(placed, status=OrderStatus.UNKNOWN, filled_contracts=Decimal(0)))

        with pytest.raises(ExchangeUnavailable):  # trading does not start
            await reconcile(gateway, journal, clock, landing_secs=0.0)
        [left] = await journal.open_orders()
        assert left.status is OrderStatus.UNKNOWN  # not "rejected"

        gateway.failing = False
        result = await reconcile(gateway, journal, clock, landing_secs=0.0)
        assert result.orders_settled == 1
        [order] = await journal.list_orders()
        assert order["status"] == "filled"
    finally:
        await journal.close()
        await gateway.close()
