"""The emulator's Binance USD-M dialect through the stock ccxt/ccxt.pro `binanceusdm` client, on loopback:
markets, prices, orders placed, looked up by client order id and cancelled, fills, funding income,
positions and balances against the engine's own records; Binance's authentication and refusals; the
market streams and the user-data stream behind its listen key; and the adapter reading fills per symbol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import pytest
from tests.integration.emulator_clients import KEY, SECRET, adapter

from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.orders import FundingPayment, OrderRequest, OrderType, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.binance.protocol import numeric_id
from deltakeeper.sim.binance.server import RunningServer, serve
from deltakeeper.sim.bybit.client import point_ccxt_at

pytestmark = pytest.mark.timeout(60)

SOL = "SOL/USDT:USDT"
FUNDING_SPEED = 28_800
"""Simulated seconds per wall second: the 8-hourly funding settles every second."""


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=600, seed=7, scenario=False)
    yield server
    await server.close()


def client(server: RunningServer, secret: str = SECRET) -> Any:
    exchange = ccxtpro.binanceusdm({"apiKey": KEY, "secret": secret, "enableRateLimit": False,
                                    "options": {"fetchOpenOrders": {"warnWithoutSymbol": False}}})
    point_ccxt_at(exchange, server.url)
    return exchange


@pytest.fixture
async def exchange(emulator: RunningServer) -> AsyncIterator[Any]:
    binance = client(emulator)
    await binance.load_markets()
    yield binance
    await binance.close()


async def set_faults(server: RunningServer, **faults: Any) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/sim/faults", json=faults) as answer:
            assert answer.status == 200, await answer.text()


async def test_markets_and_prices_are_the_engines(emulator: RunningServer, exchange: Any) -> None:
    engine = emulator.venue.engine
    market = exchange.market(SOL)
    book = (await exchange.fetch_bids_asks([SOL]))[SOL]
    mark = await exchange.fetch_mark_price(SOL)
    depth = await exchange.fetch_order_book(SOL, 5)
    quote = engine.quote(SOL)

    assert sorted(exchange.symbols) == ["BTC/USDT:USDT", "ETH/USDT:USDT", SOL]
    assert (market["id"], market["linear"], market["settle"]) == ("SOLUSDT", True, "USDT")
    assert Decimal(str(market["precision"]["amount"])) == engine.instruments[SOL].lot_step_contracts
    assert quote is not None and Decimal(book["info"]["bidPrice"]) <= Decimal(book["info"]["askPrice"])
    assert Decimal(mark["info"]["markPrice"]) > 0 and int(mark["info"]["nextFundingTime"]) > mark["timestamp"]
    assert len(depth["bids"]) == len(depth["asks"]) == 5 and depth["bids"][0][0] < depth["asks"][0][0]


async def test_an_order_is_placed_looked_up_by_client_id_and_its_fill_listed(emulator: RunningServer,
                                                                             exchange: Any) -> None:
    placed = await exchange.create_order(SOL, "market", "sell", 2, None, {"clientOrderId": "dkbn1"})
    found = await exchange.fetch_order(None, SOL, {"origClientOrderId": "dkbn1"})
    [trade] = await exchange.fetch_my_trades(SOL)
    [engine_fill] = emulator.venue.engine.fills(KEY)

    assert (placed["clientOrderId"], placed["status"], placed["filled"]) == ("dkbn1", "closed", 2)
    assert (found["id"], found["status"], found["side"]) == (placed["id"], "closed", "sell")
    assert (trade["order"], trade["side"], trade["amount"]) == (placed["id"], "sell", 2)
    assert Decimal(trade["info"]["price"]) == engine_fill.price
    assert Decimal(trade["info"]["commission"]) == engine_fill.fee
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.fetch_order(None, SOL, {"origClientOrderId": "dkbn-none"})


async def test_a_resting_order_is_listed_and_cancelled(exchange: Any) -> None:
    bid = (await exchange.fetch_bids_asks([SOL]))[SOL]["bid"]
    placed = await exchange.create_order(SOL, "limit", "buy", 1, round(bid * 0.8, 2),
                                         {"clientOrderId": "dkbn2"})
    listed = [order["clientOrderId"] for order in await exchange.fetch_open_orders()]
    cancelled = await exchange.cancel_order(placed["id"], SOL)

    assert listed == ["dkbn2"]
    assert cancelled["status"] == "canceled"
    assert await exchange.fetch_open_orders() == []
    with pytest.raises(ccxt.OrderNotFound):  # Binance: -2011 "Unknown order sent."
        await exchange.cancel_order(placed["id"], SOL)


async def test_positions_and_balances_are_the_engines(emulator: RunningServer, exchange: Any) -> None:
    await exchange.create_order(SOL, "market", "buy", 3, None, {"clientOrderId": "dkbn3"})
    [position] = await exchange.fetch_positions()
    balance = await exchange.fetch_balance()
    account = await exchange.fapiPrivateV3GetAccount()
    [held] = emulator.venue.engine.positions(KEY)
    wallet = emulator.venue.engine.balances(KEY)

    assert (position["symbol"], position["side"], position["contracts"]) == (SOL, "long", 3)
    assert Decimal(position["info"]["entryPrice"]) == held.entry_price
    assert {asset["asset"]: Decimal(asset["walletBalance"]) for asset in balance["info"]["assets"]} == wallet
    assert held.maintenance_margin and Decimal(account["totalMaintMargin"]) == held.maintenance_margin


async def test_funding_settles_as_funding_fee_income() -> None:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=FUNDING_SPEED, seed=7, scenario=False)
    binance = client(server)
    try:
        await binance.load_markets()
        await binance.create_order(SOL, "market", "sell", 5, None, {"clientOrderId": "dkbn4"})
        engine = server.venue.engine
        for _ in range(100):
            if engine.funding_payments(KEY):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        income = await binance.fetch_funding_history()
        payments = {p.payment_id: p for p in engine.funding_payments(KEY)}
    finally:
        await binance.close()
        await server.close()

    assert income and len(income) == len(payments)
    for entry, payment in zip(income, sorted(payments.values(), key=lambda p: p.ts), strict=True):
        assert entry["info"]["incomeType"] == "FUNDING_FEE" and entry["symbol"] == SOL
        assert Decimal(entry["info"]["income"]) == payment.amount and entry["code"] == "USDT"


async def test_authentication_refusals_are_binances(emulator: RunningServer) -> None:
    forged = client(emulator, secret="not-the-secret")
    late = client(emulator)
    late.options["timeDifference"] = 10_000  # the client's clock 10 s behind: outside recvWindow (5 s)
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await forged.fetch_balance()
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await late.fetch_balance()
    finally:
        await forged.close()
        await late.close()


async def test_rate_limit_refusals_answer_429_and_418_with_retry_after(emulator: RunningServer,
                                                                      exchange: Any) -> None:
    await set_faults(emulator, rate_limit=1, retry_after_ms=2000)
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.url}/fapi/v1/time") as answer:
        status, retry_after, body = answer.status, answer.headers.get("Retry-After"), await answer.json()
    with pytest.raises(ccxt.DDoSProtection):
        await exchange.fetch_balance()
    await set_faults(emulator, rate_limit=0, ip_rate_limit=1)
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        await exchange.fetch_balance()

    assert (status, retry_after, body["code"]) == (429, "2", -1003)


async def test_market_and_user_data_streams(emulator: RunningServer, exchange: Any) -> None:
    books = await asyncio.wait_for(exchange.watch_bids_asks([SOL]), 10)
    marks = await asyncio.wait_for(exchange.watch_mark_prices([SOL]), 10)
    orders = asyncio.ensure_future(exchange.watch_orders())
    trades = asyncio.ensure_future(exchange.watch_my_trades())
    await asyncio.sleep(0.5)  # subscribed (the listen key's stream open)
    placed = await exchange.create_order(SOL, "market", "buy", 1, None, {"clientOrderId": "dkbn5"})
    [order] = [o for o in await asyncio.wait_for(orders, 10) if o["id"] == placed["id"]]
    [trade] = await asyncio.wait_for(trades, 10)
    balance = asyncio.ensure_future(exchange.watch_balance())
    positions = asyncio.ensure_future(exchange.watch_positions())
    await asyncio.sleep(0.3)
    await exchange.create_order(SOL, "market", "buy", 1, None, {"clientOrderId": "dkbn6"})
    pushed_balance = await asyncio.wait_for(balance, 10)
    pushed = await asyncio.wait_for(positions, 10)

    assert books[SOL]["bid"] <= books[SOL]["ask"] and marks[SOL]["markPrice"] > 0
    assert marks[SOL]["info"]["r"] is not None  # the funding rate
    assert order["clientOrderId"] == "dkbn5"
    assert (trade["order"], trade["amount"], trade["info"]["c"]) == (placed["id"], 1, "dkbn5")
    assert [(p["symbol"], p["contracts"], p["side"]) for p in pushed] == [(SOL, 2, "long")]
    wallet = emulator.venue.engine.balances(KEY)
    assert pushed_balance["total"] == pytest.approx({coin: float(amount) for coin, amount in wallet.items()})


async def test_the_user_data_stream_needs_a_valid_listen_key(emulator: RunningServer, exchange: Any) -> None:
    key = (await exchange.fapiPrivatePostListenKey())["listenKey"]
    again = (await exchange.fapiPrivatePostListenKey())["listenKey"]
    kept = (await exchange.fapiPrivatePutListenKey())["listenKey"]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{emulator.url}/private/ws?listenKey={key}") as ws:
            assert not ws.closed
        await exchange.fapiPrivateDeleteListenKey()
        async with session.get(f"{emulator.url}/private/ws?listenKey={key}") as refused:
            assert (refused.status, (await refused.json())["code"]) == (400, -1125)

    assert key == again == kept


async def test_the_adapter_refuses_an_unaffordable_order_and_reads_fills_per_symbol(
        emulator: RunningServer) -> None:
    bot = adapter(emulator)
    fresh = adapter(emulator)
    try:
        await bot.load_instruments()
        since = bot._clock.now() - timedelta(seconds=5)
        with pytest.raises(OrderRejected, match="-2019"):  # Binance's futures code, on a local URL too
            await bot.place_order(OrderRequest("dkpoor", "BTC/USDT:USDT", Side.BUY, Decimal(1000)))
        await bot.place_order(OrderRequest("dkfill1", SOL, Side.SELL, Decimal(2)))
        await bot.place_order(OrderRequest("dkfill2", "ETH/USDT:USDT", Side.BUY, Decimal("0.1"),
                                           OrderType.MARKET))
        await fresh.load_instruments()
        await fresh.fetch_account()  # a restarted adapter knows the markets it holds, not the orders
        fills = await fresh.fetch_fills(since)
    finally:
        await bot.close()
        await fresh.close()

    assert sorted((f.client_order_id, f.symbol, f.amount_contracts) for f in fills) == [
        ("dkfill1", SOL, Decimal(2)), ("dkfill2", "ETH/USDT:USDT", Decimal("0.1"))]


async def test_the_adapter_reads_funding_when_a_balance_push_says_it_settled() -> None:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=FUNDING_SPEED, seed=7, scenario=False)
    bot = adapter(server)
    try:
        await bot.load_instruments()
        await bot.place_order(OrderRequest("dkfund1", SOL, Side.SELL, Decimal(5)))
        async with aclosing(bot.account_events()) as events:
            opened = datetime.now(UTC)
            # Past the backfills at (re)subscription: only a read on the push brings it.
            payment = await asyncio.wait_for(first_funding_after(events, opened + timedelta(seconds=4)), 20)
        recorded = {str(numeric_id(p.payment_id)): p for p in server.venue.engine.funding_payments(KEY)}
    finally:
        await bot.close()
        await server.close()

    assert payment.symbol == SOL and payment.amount == recorded[payment.payment_id].amount


async def first_funding_after(events: AsyncIterator[Any], after: datetime) -> FundingPayment:
    async for event in events:
        if isinstance(event, FundingPayment) and event.ts > after:
            return event
    raise AssertionError("the account stream ended")


async def test_the_adapter_reads_a_quote_with_its_mark_and_funding_by_rest(emulator: RunningServer) -> None:
    bot = adapter(emulator)
    try:
        await bot.load_instruments()
        quote = await bot.fetch_quote(SOL)
    finally:
        await bot.close()

    # The book ticker carries the book, the mark price answer the mark, index and funding rate.
    assert quote.symbol == SOL and 0 < quote.bid <= quote.ask
    assert quote.mark > 0 and quote.index is not None and quote.funding_rate is not None


async def test_a_position_push_makes_the_adapter_read_the_account(emulator: RunningServer) -> None:
    bot = adapter(emulator)
    try:
        await bot.load_instruments()
        async with aclosing(bot.account_events()) as events:
            flat = await asyncio.wait_for(first_snapshot(events), 10)
            await bot.place_order(OrderRequest("dkpos1", SOL, Side.BUY, Decimal(3)))
            held = await asyncio.wait_for(first_snapshot(events, with_position=True), 10)
    finally:
        await bot.close()

    assert flat.positions == ()
    [position] = held.positions
    assert (position.symbol, position.contracts) == (SOL, Decimal(3)) and position.mark_price > 0


async def first_snapshot(events: AsyncIterator[Any], with_position: bool = False) -> AccountSnapshot:
    async for event in events:
        if isinstance(event, AccountSnapshot) and bool(event.positions) == with_position:
            return event
    raise AssertionError("the account stream ended")
