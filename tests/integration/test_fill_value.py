"""A fill valued in a coin (a cross pair's quote, a coin-priced option's premium) is journaled in USD: the
adapter reads the coin's USD price from the exchange, through the real ccxt client against the Bybit emulator
on loopback (the emulator lists no cross pair: the instrument is added to the adapter's markets, the price
read is the emulator's)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.integration.frozen_emulator import KEY, SECRET, SPOT, frozen_emulator

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Fill, OrderRequest, Side
from deltakeeper.sim.bybit.server import serve

pytestmark = pytest.mark.timeout(20)

CROSS = Instrument("SOL/BTC", Kind.SPOT, "SOL", "BTC", "BTC")


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def cross_trade(symbol: str = "SOL/BTC") -> dict[str, Any]:
    """ccxt's trade of 12 SOL bought at 0.002 BTC: 0.024 BTC."""
    return {"id": "t1", "order": "o1", "clientOrderId": "dk1a0", "symbol": symbol, "side": "buy",
            "amount": 12.0, "price": 0.002, "timestamp": 1_700_000_000_000, "takerOrMaker": "taker",
            "fee": {"cost": 0.012, "currency": "SOL"}, "info": {}}


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[CcxtExchange, Decimal]]:
    async with frozen_emulator() as server:
        bybit = CcxtExchange("bybit", clock=WallClock(), api_key=KEY, secret=SECRET, base_url=server.url,
                             rng=random.Random(1))
        try:
            await bybit.load_instruments()
            bybit._instruments[CROSS.symbol] = CROSS
            quote = server.venue.engine.quote("BTC/USDT:USDT")
            assert quote is not None
            yield bybit, quote.mark
        finally:
            await bybit.close()


async def test_a_fill_valued_in_btc_is_converted_at_btcs_mark_read_from_the_exchange(
        exchange: tuple[CcxtExchange, Decimal]) -> None:
    bybit, btc_mark = exchange

    fill = await bybit._trade_event(cross_trade())

    assert isinstance(fill, Fill)
    assert fill.notional_usd == Decimal("0.024") * btc_mark
    assert fill.notional_usd > 100  # 0.024 BTC, not "0.024 USD"


async def test_a_fill_in_a_coin_no_market_prices_is_not_read(exchange: tuple[CcxtExchange, Decimal]) -> None:
    bybit, _ = exchange
    bybit._instruments["SOL/XYZ"] = Instrument("SOL/XYZ", Kind.SPOT, "SOL", "XYZ", "XYZ")

    with pytest.raises(ExchangeUnavailable, match="XYZ"):
        await bybit._trade_event(cross_trade("SOL/XYZ"))


async def test_a_fill_whose_value_is_unknown_waits_on_the_stream_and_arrives_once_it_is_known() -> None:
    # The emulator's clock from now (the frozen one starts on the hour, behind the backfill's window).
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=1, seed=7, start=datetime.now(UTC),
                         scenario=False)
    try:
        bybit = CcxtExchange("bybit", clock=WallClock(), api_key=KEY, secret=SECRET, base_url=server.url,
                             backoff_initial_secs=0.05, backoff_max_secs=0.2, rng=random.Random(1))
        try:
            instruments = await bybit.load_instruments()
            bybit._instruments[SPOT] = Instrument(SPOT, Kind.SPOT, "SOL", "XYZ", "XYZ")  # no USD price
            unpriced = asyncio.Event()
            usd_price = bybit._usd_price

            async def noting_usd_price(coin: str) -> Decimal:
                try:
                    return await usd_price(coin)
                finally:
                    unpriced.set()

            bybit._usd_price = noting_usd_price  # type: ignore[method-assign]
            with capture_logs() as logs:
                async with aclosing(bybit.account_events()) as events:
                    first_fill = asyncio.create_task(_first_fill(events))
                    await bybit.place_order(OrderRequest("dk-unpriced", SPOT, Side.BUY, Decimal(1)))
                    await asyncio.wait([first_fill, asyncio.create_task(unpriced.wait())],
                                       return_when=asyncio.FIRST_COMPLETED)
                    bybit._instruments[SPOT] = instruments[SPOT]  # the price can be known again
                    fill = await asyncio.wait_for(first_fill, 15)
        finally:
            await bybit.close()
    finally:
        await server.close()

    assert fill.client_order_id == "dk-unpriced"
    assert fill.notional_usd == fill.amount_contracts * fill.price  # USDT, as is
    unknown = [entry for entry in logs if "XYZ" in str(entry.get("error"))]
    assert unknown[0]["event"] == "stream_error" and unknown[0]["stream"] == "trades"


async def _first_fill(events: AsyncIterator[Any]) -> Fill:
    async for event in events:
        if isinstance(event, Fill):
            return event
    raise AssertionError("stream ended")
