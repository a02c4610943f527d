"""Bybit's deliveries at expiry (`execType` Delivery, or Settle for an inverse future) through ccxt's own
parser into delivery fills: no trade, no client order id, and an option that expired worthless priced 0
(fixtures/ccxt/README.md, `bybit_execution_delivery.json`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from tests.unit.test_ccxt_parse import bybit_with_markets, recorded

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.adapters.ccxt_parse import MalformedPayload
from deltakeeper.adapters.ccxt_trades import fill_from_trade, is_delivery_trade, is_liquidation_trade
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import FillKind, Side
from deltakeeper.sim.clock import WallClock

EXPIRY = datetime(2024, 12, 27, 8, 0, tzinfo=UTC)
FUTURE = Instrument("ETH/USDC:USDC-241227", Kind.FUTURE, "ETH", "USDC", "USDC", expiry=EXPIRY)
OPTION = Instrument("BTC/USDC:USDC-241227-100000-C", Kind.OPTION, "BTC", "USDC", "USDC", expiry=EXPIRY,
                    strike=Decimal(100_000), option_type="call")
INVERSE = Instrument("BTC/USD:BTC-241227", Kind.FUTURE, "BTC", "USD", "BTC", inverse=True, expiry=EXPIRY)


def test_a_bybit_future_delivery_is_a_delivery_fill_at_the_delivery_price() -> None:
    trade = bybit_with_markets().parse_trade(recorded("bybit_execution_delivery.json")["future"])

    fill = fill_from_trade(trade, FUTURE, "bybit")

    assert is_delivery_trade(trade, "bybit") and not is_liquidation_trade(trade, "bybit")
    assert (fill.kind, fill.delivery, fill.traded) == (FillKind.DELIVERY, True, False)
    assert (fill.trade_id, fill.exchange_order_id) == ("0b6e2f93-4d17-5c8a-a3f1-e85c27d9b046",
                                                       "9e1c4b27-6a3d-4f80-b5e2-7d0a93c61f48")
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, Decimal("0.1"), Decimal("3400.5"))
    assert (fill.fee, fill.client_order_id, fill.ts) == (0, None, EXPIRY)
    assert fill.notional_usd == Decimal("340.05")


def test_a_bybit_option_that_expired_worthless_is_a_delivery_fill_priced_zero() -> None:
    raw = recorded("bybit_execution_delivery.json")["option_worthless"]
    trade = bybit_with_markets().parse_trade(raw)

    fill = fill_from_trade(trade, OPTION, "bybit")

    assert fill.delivery and fill.symbol == OPTION.symbol
    assert (fill.side, fill.amount_contracts) == (Side.SELL, Decimal("0.5"))
    assert (fill.price, fill.notional_usd) == (0, 0)
    as_trade = bybit_with_markets().parse_trade(raw | {"execType": "Trade", "orderLinkId": "dk1a0"})
    with pytest.raises(MalformedPayload, match="amount/price"):  # a trade at no price is still malformed
        fill_from_trade(as_trade, OPTION, "bybit")


def test_a_bybit_inverse_future_settlement_is_a_delivery_fill_of_its_usd_face() -> None:
    trade = bybit_with_markets().parse_trade(recorded("bybit_execution_delivery.json")["inverse"])

    fill = fill_from_trade(trade, INVERSE, "bybit")

    assert fill.delivery and not fill.liquidation
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, 100, 95_000)
    assert fill.notional_usd == 100


@pytest.mark.parametrize("exchange_id", ["okx", "deribit", "binanceusdm"])
def test_the_execution_type_is_read_on_bybit_only(exchange_id: str) -> None:
    trade = bybit_with_markets().parse_trade(recorded("bybit_execution_delivery.json")["future"])
    assert not is_delivery_trade(trade, exchange_id)


async def test_the_adapter_asks_bybit_for_deliveries_on_rest_and_its_execution_stream() -> None:
    exchange = CcxtExchange("bybit", clock=WallClock(), rng=random.Random(1))
    try:
        streamed = exchange._rest.options["watchMyTrades"]["execType"]
    finally:
        await exchange.close()
    assert {"Trade", "Delivery", "Settle", "BustTrade", "AdlTrade", "Funding"} <= set(streamed)
