"""Quarterly futures on the Bybit emulator through real ccxt: listed as Bybit lists them (so that ccxt reads
a unified symbol, an expiry and type `future`), quoted, traded, held, and settled at delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro
import pytest
from tests.integration.emulator_clients import adapter
from tests.integration.service_harness import until

from deltakeeper.domain.instruments import Kind
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.server import RunningServer, serve

KEY, SECRET = "dk-test-key", "dk-test-secret"
SPEED = 60.0
START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 25, 8, 0, tzinfo=UTC)
DEC_MS = int(DEC.timestamp() * 1000)
LINEAR_DEC, INVERSE_DEC = "BTC/USDT:USDT-261225", "BTC/USD:BTC-261225"


async def start(start: datetime) -> RunningServer:
    return await serve("127.0.0.1", 0, {KEY: SECRET}, speed=SPEED, seed=7, start=start, tick_secs=5,
                       scenario=False)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    server = await start(START)
    yield server
    await server.close()


@pytest.fixture
async def exchange(emulator: RunningServer) -> AsyncIterator[Any]:
    client = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(client, emulator.url)
    await client.load_markets()
    yield client
    await client.close()


async def test_quarterlies_are_listed_with_bybits_ids_contract_types_and_delivery_times(
        emulator: RunningServer, exchange: Any) -> None:
    linear = exchange.markets[LINEAR_DEC]
    assert (linear["id"], linear["type"], linear["future"], linear["swap"]) == ("BTCUSDT-25DEC26", "future",
                                                                              True, False)
    assert (linear["linear"], linear["settle"], linear["contractSize"]) == (True, "USDT", 1)
    assert linear["info"]["contractType"] == "LinearFutures"
    assert linear["expiry"] == DEC_MS == int(linear["info"]["deliveryTime"])
    inverse = exchange.markets[INVERSE_DEC]
    assert (inverse["id"], inverse["type"], inverse["inverse"]) == ("BTCUSDZ26", "future", True)
    assert (inverse["settle"], inverse["contractSize"]) == ("BTC", 1)
    assert inverse["info"]["contractType"] == "InverseFutures"
    # one ccxt market for each listed quarterly, under the engine's symbol
    listed = {s for s, i in emulator.venue.engine.instruments.items() if i.kind is Kind.FUTURE}
    assert len(listed) == 10
    assert {s for s, m in exchange.markets.items() if m["type"] == "future"} == listed
    assert exchange.markets["BTC/USD:BTC-270326"]["id"] == "BTCUSDH27"

    bot = adapter(emulator)
    try:
        instruments = await bot.load_instruments()
    finally:
        await bot.close()
    future = instruments[LINEAR_DEC]
    assert (future.kind, future.base, future.settle, future.inverse) == (Kind.FUTURE, "BTC", "USDT", False)
    assert future.expiry == DEC
    assert future.funding_interval_secs is None


async def test_a_quarterly_ticker_carries_its_basis_over_the_index_and_no_funding(
        emulator: RunningServer, exchange: Any) -> None:
    symbol = LINEAR_DEC
    ticker = await exchange.fetch_ticker(symbol)
    assert ticker["symbol"] == symbol and 0 < ticker["bid"] < ticker["ask"]
    index, mark = float(ticker["info"]["indexPrice"]), float(ticker["info"]["markPrice"])
    # 8% a year over the 21 days to expiry: about 0.46% over the index
    assert 1.004 < mark / index < 1.005
    assert ticker["info"]["fundingRate"] == ""
    assert ticker["info"]["deliveryTime"] == str(DEC_MS)
    streamed = await exchange.watch_ticker(INVERSE_DEC)  # the public websocket of its category
    assert streamed["symbol"] == INVERSE_DEC and 0 < streamed["bid"] < streamed["ask"]


async def test_linear_and_inverse_quarterlies_trade_and_hold_positions(exchange: Any,
                                                                       emulator: RunningServer) -> None:
    linear, inverse = LINEAR_DEC, INVERSE_DEC
    sold = await exchange.create_order(linear, "market", "sell", 0.01, params={"clientOrderId": "dkf1"})
    positions = await exchange.fetch_positions([linear])
    assert [(p["symbol"], p["side"], p["contracts"]) for p in positions] == [(linear, "short", 0.01)]
    trades = await exchange.fetch_my_trades(linear)
    assert trades[0]["order"] == sold["id"] and trades[0]["fee"]["currency"] == "USDT"
    await exchange.create_order(linear, "market", "buy", 0.01, params={"reduceOnly": True})
    assert (await exchange.fetch_positions([linear]))[0]["contracts"] == 0

    engine = emulator.venue.engine
    engine.adjust_balance(KEY, "BTC", Decimal("0.01"), emulator.venue.clock.now())  # a deposit: collateral
    await exchange.create_order(inverse, "market", "sell", 100)
    held = await exchange.fetch_positions([inverse])
    assert (held[0]["side"], held[0]["contracts"]) == ("short", 100)
    assert [(p.symbol, p.contracts) for p in engine.positions(KEY) if p.symbol == INVERSE_DEC] == [
        (INVERSE_DEC, -100)]


async def test_a_held_quarterly_is_settled_at_delivery_and_delisted() -> None:
    server = await start(DEC - timedelta(minutes=10))  # ten simulated minutes: 10 s of wall time
    client = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(client, server.url)
    try:
        await client.load_markets()
        symbol = LINEAR_DEC
        await client.create_order(symbol, "market", "sell", 0.01)
        assert (await client.fetch_positions([symbol]))[0]["contracts"] == 0.01
        await until(lambda: server.venue.clock.now() > DEC + timedelta(seconds=10), 60, "the delivery")
        assert [p for p in server.venue.engine.positions(KEY) if p.symbol == LINEAR_DEC] == []
        answer = await client.public_get_v5_market_instruments_info({"category": "linear"})
        listed = {item["symbol"] for item in answer["result"]["list"]}
        assert "BTCUSDT-25DEC26" not in listed and "BTCUSDT-26MAR27" in listed
        with pytest.raises(Exception, match="expired"):
            await client.create_order(symbol, "market", "sell", 0.01)
    finally:
        await client.close()
        await server.close()
