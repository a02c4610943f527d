"""`DK_MODE=shadow` as `deltakeeper run` wires it (bootstrap: the exchange behind `ShadowExchange`), on the
real simulated exchange and a real SQLite journal: the account is read and decided on, every decision that
trades is journaled with its order, the order cancelled as `shadow mode`, and the exchange sees no order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until

from deltakeeper.adapters.shadow import ShadowExchange
from deltakeeper.bootstrap import build_runner, build_sim_exchange
from deltakeeper.sim.gateway import SimGateway


async def test_shadow_mode_journals_decisions_and_their_orders_cancelled_and_sends_nothing(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, mode="shadow")
    async with journal_for(settings) as journal:
        exchange, clock = build_sim_exchange(settings)
        assert isinstance(exchange, SimGateway)
        runner = await build_runner(settings, exchange, journal, clock, RecordingAlerts())
        assert isinstance(runner.service.exchange, ShadowExchange)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:

            async def shadow_orders() -> list[dict[str, object]]:
                return [o for o in await journal.list_orders() if o["status"] == "canceled"]

            orders: list[dict[str, object]] = []

            async def some() -> bool:
                orders[:] = await shadow_orders()
                return len(orders) >= 2

            deadline = asyncio.get_running_loop().time() + 20
            while not await some():
                assert asyncio.get_running_loop().time() < deadline, "no shadow orders journaled"
                await asyncio.sleep(0.1)
            await until(lambda: not runner.service.orders.in_flight, 5, "nothing in flight")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await exchange.close()

        assert exchange.engine.orders(exchange.account_id) == []  # nothing reached the exchange
        assert {o["reject_reason"] for o in orders} == {"shadow mode"}
        decisions = await journal.list_decisions()
        traded = {d["decision_id"] for d in decisions if d["reason"] == "rebalance"}
        assert traded >= {o["decision_id"] for o in orders}
