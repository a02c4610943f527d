"""An expired quarterly on the Bybit emulator, as Bybit reports it: a `Delivery` execution of no order
(`Settle` for an inverse future), read through the real ccxt client and by the adapter, whose fills and
account stream carry it as a delivery fill (not a trade, no client order id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from tests.integration.frozen_emulator import KEY, SECRET, ccxt_client, opened_adapter
from tests.integration.service_harness import until
from tests.integration.test_liquidation_executions import streamed

from deltakeeper.domain.orders import Fill, Side
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.clock import WallClock

D = Decimal
HOUR_SECS = 3600
DEC = datetime.fromisoformat("2026-12-25T08:00:00+00:00")
LINEAR_DEC, INVERSE_DEC = "BTC/USDT:USDT-261225", "BTC/USD:BTC-261225"

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def before_expiry() -> AsyncIterator[RunningServer]:
    """The emulator a simulated minute before the December quarterlies expire, at 60 times the wall clock,
    quoted on the hour (the next quote at expiry); the account holds 0.01 BTC besides the default
    scenario's balances."""
    start = DEC - timedelta(minutes=1)
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=60, seed=7, start=start, tick_secs=HOUR_SECS,
                         scenario=False)
    server.venue.engine.adjust_balance(KEY, "BTC", D("0.01"), start)
    try:
        yield server
    finally:
        await server.close()




def by_symbol(fill: Fill) -> str:
    return fill.symbol


def deliveries(events: list[AccountEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill) and e.delivery]


async def test_an_expired_quarterly_is_a_delivery_execution_in_ccxt_and_a_delivery_fill_of_the_adapter(
        ) -> None:
    async with before_expiry() as server, ccxt_client(server) as client, opened_adapter(server) as exchange, \
            streamed(exchange) as events:
        since = WallClock().now() - timedelta(minutes=1)
        for symbol, qty in (("BTCUSDT-25DEC26", "0.01"), ("BTCUSDZ26", "100")):
            server.venue.create_order(KEY, {"category": "inverse" if symbol.endswith("Z26") else "linear",
                                            "symbol": symbol, "side": "Sell", "orderType": "Market",
                                            "qty": qty})
        await until(lambda: sum(isinstance(e, Fill) for e in events) == 2, 5, "the shorts' fills")
        await until(lambda: len(deliveries(events)) == 2, 10, "the deliveries on the stream at expiry")
        fills = await exchange.fetch_fills(since)
        trades = await client.fetch_my_trades(LINEAR_DEC)  # ccxt asks for execType Trade unless told
        delivered = await client.fetch_my_trades(LINEAR_DEC, params={"execType": "Delivery"})
        settled = await client.fetch_my_trades(INVERSE_DEC, params={"execType": "Settle"})
        ledger = (await client.privateGetV5AccountTransactionLog(
            {"category": "linear", "type": "DELIVERY"}))["result"]["list"]
        orders = (await client.privateGetV5OrderHistory({"category": "linear"}))["result"]["list"]
    engine_deliveries = [f for f in server.venue.engine.fills(KEY) if f.delivery]
    settlement = engine_deliveries[0].price  # BTC's index at the first quote at or after expiry

    fetched = [f for f in fills if f.delivery]
    assert sorted(deliveries(events), key=by_symbol) == sorted(fetched, key=by_symbol)
    assert sorted((replace(f, ts=DEC) for f in fills if f.delivery), key=by_symbol) == sorted(
        engine_deliveries, key=by_symbol)  # the same fills, but for the venue's wall-clock stamps
    delivered_by = {f.symbol: f for f in fills if f.delivery}
    linear, inverse = delivered_by[LINEAR_DEC], delivered_by[INVERSE_DEC]
    assert (linear.side, linear.amount_contracts, linear.price) == (Side.BUY, D("0.01"), settlement)
    assert (inverse.side, inverse.amount_contracts, inverse.price) == (Side.BUY, D(100), settlement)
    assert linear.notional_usd == D("0.01") * settlement and inverse.notional_usd == D(100)
    for fill in (linear, inverse):
        assert (fill.client_order_id, fill.fee, fill.liquidation, fill.traded) == (None, 0, False, False)
    assert not any(f.delivery or f.liquidation for f in fills if f.client_order_id is not None)
    assert [f.traded for f in fills].count(True) == 2  # the two shorts

    assert {t["info"]["execType"] for t in trades} == {"Trade"}
    [row] = delivered
    assert (row["id"], row["order"], row["side"]) == (linear.trade_id, linear.exchange_order_id, "buy")
    assert (D(str(row["amount"])), D(str(row["price"]))) == (D("0.01"), settlement)
    info = row["info"]
    assert (info["execType"], info["createType"], info["orderLinkId"], info["orderType"]) == (
        "Delivery", "CreateBySettle", "", "UNKNOWN")
    assert (D(info["execFee"]), D(info["closedSize"])) == (0, D("0.01"))
    [inverse_row] = settled
    assert inverse_row["info"]["execType"] == "Settle" and inverse_row["id"] == inverse.trade_id

    [entry] = ledger
    assert (entry["tradeId"], entry["type"], D(entry["size"]), D(entry["fee"])) == (
        linear.trade_id, "DELIVERY", 0, 0)
    assert linear.exchange_order_id not in {o["orderId"] for o in orders}  # a trade, but not an order
