"""An engine liquidation on the Bybit emulator, as Bybit reports a takeover liquidation (a BustTrade
execution on an order of the liquidation engine), read through the real ccxt client and by the adapter,
whose fills and account stream carry it as a liquidation fill."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import timedelta
from decimal import Decimal

import pytest
from tests.integration.frozen_emulator import (
    KEY,
    LINEAR,
    ccxt_client,
    engine_position,
    frozen_emulator,
    opened_adapter,
    sell,
)
from tests.integration.service_harness import until

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.orders import Fill, Quote, Side
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.bybit.server import RunningServer

D = Decimal
SHORT_SOL = D(600)

pytestmark = pytest.mark.timeout(60)


def adapter(server: RunningServer) -> AbstractAsyncContextManager[CcxtExchange]:
    """The adapter on the emulator's simulated clock (the hour started, then wall time): its fills' times."""
    return opened_adapter(server, server.venue.clock)


@asynccontextmanager
async def streamed(exchange: CcxtExchange) -> AsyncIterator[list[AccountEvent]]:
    """The adapter's account events, collected as they come."""
    events: list[AccountEvent] = []

    async def collect() -> None:
        async for event in exchange.account_events():
            events.append(event)

    task = asyncio.create_task(collect())
    try:
        yield events
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def rally_past_liquidation(server: RunningServer) -> tuple[Decimal, Decimal]:
    """A quote whose mark is 1% beyond the short's liquidation price; returns (that mark, the short's
    entry price)."""
    held = engine_position(server, LINEAR)
    assert held.liquidation_price is not None
    mark = (held.liquidation_price * D("1.01")).quantize(D("0.01"))
    server.venue.engine.on_quote(Quote(LINEAR, bid=mark - D("0.01"), ask=mark + D("0.01"), mark=mark,
                                       ts=server.venue.clock.now(), index=mark))
    return mark, held.entry_price


def liquidation_fills(events: list[AccountEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill) and e.liquidation]


async def test_an_engine_liquidation_is_a_bust_trade_in_ccxt_and_a_liquidation_fill_of_the_adapter() -> None:
    async with frozen_emulator() as server, ccxt_client(server) as client, adapter(server) as exchange, \
            streamed(exchange) as events:
        since = server.venue.clock.now() - timedelta(minutes=1)
        sell(server, "linear", "SOLUSDT", str(SHORT_SOL))
        await until(lambda: any(isinstance(e, Fill) for e in events), 5, "the short's fill on the stream")
        mark, entry_price = rally_past_liquidation(server)
        assert all(p.symbol != LINEAR for p in server.venue.engine.positions(KEY))
        await until(lambda: bool(liquidation_fills(events)), 5, "the liquidation fill on the stream")
        [streamed_fill] = liquidation_fills(events)
        fills = await exchange.fetch_fills(since)
        trades = await client.fetch_my_trades(LINEAR)  # ccxt asks for execType Trade unless told otherwise
        busts = await client.fetch_my_trades(LINEAR, params={"execType": "BustTrade"})
        taker_fee_rate = server.venue.engine.instruments[LINEAR].taker_fee_rate
        rows = (await client.privateGetV5ExecutionList({"category": "linear", "execType": "BustTrade"}))[
            "result"]["list"]
        orders = (await client.privateGetV5OrderHistory({"category": "linear", "symbol": "SOLUSDT"}))[
            "result"]["list"]
        ledger = (await client.privateGetV5AccountTransactionLog(
            {"category": "linear", "type": "LIQUIDATION"}))["result"]["list"]

    [liquidated] = [f for f in fills if f.liquidation]
    assert fills[-1] == liquidated and not any(f.liquidation for f in fills[:-1])  # after the short's fills
    assert liquidated == streamed_fill
    assert (liquidated.side, liquidated.amount_contracts, liquidated.price) == (Side.BUY, SHORT_SOL, mark)
    assert liquidated.client_order_id is None
    assert liquidated.fee == (SHORT_SOL * mark * taker_fee_rate).quantize(D("1e-8"))

    assert {t["info"]["execType"] for t in trades} == {"Trade"}
    [bust] = busts
    assert (bust["id"], bust["order"]) == (liquidated.trade_id, liquidated.exchange_order_id)
    assert (bust["side"], D(str(bust["amount"])), D(str(bust["price"]))) == ("buy", SHORT_SOL, mark)

    [row] = rows
    assert row["execId"] == liquidated.trade_id and row["orderId"] == liquidated.exchange_order_id
    assert (row["execType"], row["createType"], row["orderLinkId"]) == (
        "BustTrade", "CreateByTakeOver_PassThrough", "")
    assert (row["side"], row["orderType"], row["isMaker"]) == ("Buy", "Market", False)
    assert (D(row["execQty"]), D(row["closedSize"]), D(row["execPrice"])) == (SHORT_SOL, SHORT_SOL, mark)
    assert D(row["execFee"]) == liquidated.fee and D(row["markPrice"]) == mark

    [takeover] = [o for o in orders if o["orderId"] == liquidated.exchange_order_id]
    assert (takeover["createType"], takeover["orderLinkId"], takeover["orderStatus"]) == (
        "CreateByTakeOver_PassThrough", "", "Filled")
    assert (takeover["side"], takeover["reduceOnly"], D(takeover["cumExecQty"])) == ("Buy", True, SHORT_SOL)

    [entry] = ledger
    assert (entry["tradeId"], entry["type"], D(entry["size"])) == (liquidated.trade_id, "LIQUIDATION", 0)
    assert D(entry["fee"]) == liquidated.fee
    assert D(entry["cashFlow"]) == (SHORT_SOL * (entry_price - mark)).quantize(D("1e-8"))  # the short's loss
