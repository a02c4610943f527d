"""Reconciliation beside a running bot: the orders it still has in flight are its own to settle."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from tests.integration.service_harness import journal_for, make_settings

from deltakeeper.app.reconciliation import reconcile
from deltakeeper.domain.orders import OrderRequest, OrderType, Quote, Side
from deltakeeper.domain.records import OrderRecord
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments

SOL = "SOL/USDT:USDT"


async def test_orders_in_flight_are_neither_settled_nor_cancelled_and_the_others_are(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = SimClock(1)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": D(10_000)})
    gateway = SimGateway(engine, iter(()), clock, None, "sim")
    engine.on_quote(Quote(SOL, D(100), D("100.1"), D("100.05"), clock.now()))
    async with journal_for(settings) as journal:
        for cid in ("dk-in-flight", "dk-left-over"):
            request = OrderRequest(cid, SOL, Side.BUY, D(1), OrderType.LIMIT, D(90))
            await journal.record_order(OrderRecord.pending(request, 1, clock.now(), D(100), "SOL"))
            engine.place_order("sim", request, clock.now())
        result = await reconcile(gateway, journal, clock, landing_secs=1.0, in_flight={"dk-in-flight"})
    assert result.orders_canceled == 1
    assert [o.client_order_id for o in await gateway.fetch_open_orders()] == ["dk-in-flight"]


async def test_orders_with_our_prefix_the_journal_did_not_create_are_reported_not_adopted(tmp_path: Path
                                                                                        ) -> None:
    settings = make_settings(tmp_path)
    clock = SimClock(0)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": D(10_000)})
    gateway = SimGateway(engine, iter(()), clock, None, "sim")
    engine.on_quote(Quote(SOL, D(100), D("100.1"), D("100.05"), clock.now()))
    engine.place_order("sim", OrderRequest("dk-other-rests", SOL, Side.BUY, D(1), OrderType.LIMIT, D(90)),
                       clock.now())
    engine.place_order("sim", OrderRequest("dk-other-filled", SOL, Side.BUY, D(1)), clock.now())
    async with journal_for(settings) as journal:
        result = await reconcile(gateway, journal, clock, landing_secs=1.0)
        assert await journal.list_orders() == []
    assert sorted((f.client_order_id, f.symbol) for f in result.foreign_orders) == [
        ("dk-other-filled", SOL), ("dk-other-rests", SOL)]
    assert result.orders_canceled == 0
    assert [o.client_order_id for o in await gateway.fetch_open_orders()] == ["dk-other-rests"]
