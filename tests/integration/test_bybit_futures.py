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
LINEAR_DEC, INVERSE_DEC = "BTC/USDT:USDT-261225", "BTC/USD:BTC-261225"
"""The engine's (simulated-time) symbols of the December contracts."""


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


def unified(server: RunningServer, engine_symbol: str) -> str:
    """The symbol ccxt gives a future: its market and the date of its `deliveryTime`, which the emulator
    stamps on the wall clock like every time it sends (at a speed of 1, the expiry date itself)."""
    instrument = server.venue.engine.instruments[engine_symbol]
    assert instrument.expiry is not None
    delivered = datetime.fromtimestamp(server.venue.stamp_ms(instrument.expiry) / 1000, UTC)
    return f"{engine_symbol.rsplit('-', 1)[0]}-{delivered:%y%m%d}"


async def test_quarterlies_are_listed_with_bybits_ids_contract_types_and_delivery_times(
        emulator: RunningServer, exchange: Any) -> None:
    venue = emulator.venue
    linear = exchange.markets[unified(emulator, LINEAR_DEC)]
    assert (linear["id"], linear["type"], linear["future"], linear["swap"]) == ("BTCUSDT-25DEC26", "future",
                                                                              True, False)
    assert (linear["linear"], linear["settle"], linear["contractSize"]) == (True, "USDT", 1)
    assert linear["info"]["contractType"] == "LinearFutures"
    assert linear["expiry"] == venue.stamp_ms(DEC) == int(linear["info"]["deliveryTime"])
    inverse = exchange.markets[unified(emulator, INVERSE_DEC)]
    assert (inverse["id"], inverse["type"], inverse["inverse"]) == ("BTCUSDZ26", "future", True)
    assert (inverse["settle"], inverse["contractSize"]) == ("BTC", 1)
    assert inverse["info"]["contractType"] == "InverseFutures"
    march_ids = ("BTCUSDT-26MAR27", "BTCUSDH27", "SOLUSDT-26MAR27")
    march = [m for m in exchange.markets.values() if m["id"] in march_ids]
    assert len(march) == 3 and all(m["type"] == "future" for m in march)

    bot = adapter(emulator)
    try:
        instruments = await bot.load_instruments()
    finally:
        await bot.close()
    future = instruments[unified(emulator, LINEAR_DEC)]
    assert (future.kind, future.base, future.settle, future.inverse) == (Kind.FUTURE, "BTC", "USDT", False)
    assert future.expiry is not None and int(future.expiry.timestamp() * 1000) == venue.stamp_ms(DEC)
    assert future.funding_interval_secs is None


async def test_a_quarterly_ticker_carries_its_basis_over_the_index_and_no_funding(
        emulator: RunningServer, exchange: Any) -> None:
    symbol = unified(emulator, LINEAR_DEC)
    ticker = await exchange.fetch_ticker(symbol)
    assert ticker["symbol"] == symbol and 0 < ticker["bid"] < ticker["ask"]
    index, mark = float(ticker["info"]["indexPrice"]), float(ticker["info"]["markPrice"])
    # 8% a year over the 21 days to expiry: about 0.46% over the index
    assert 1.004 < mark / index < 1.005
    assert ticker["info"]["fundingRate"] == ""
    assert ticker["info"]["deliveryTime"] == str(emulator.venue.stamp_ms(DEC))


async def test_linear_and_inverse_quarterlies_trade_and_hold_positions(exchange: Any,
                                                                       emulator: RunningServer) -> None:
    linear, inverse = unified(emulator, LINEAR_DEC), unified(emulator, INVERSE_DEC)
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
        symbol = unified(server, LINEAR_DEC)
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
