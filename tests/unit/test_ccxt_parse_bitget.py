"""Bitget USDT-futures positions, fills and funding, against recorded payloads (fixtures/ccxt/README.md),
each through ccxt's own `bitget` first (offline: the implicit API method is the recording)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from tests.unit.test_ccxt_parse import recorded

from deltakeeper.adapters.ccxt_account import position_from_ccxt
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.adapters.ccxt_parse import MalformedPayload
from deltakeeper.adapters.ccxt_trades import fill_from_trade, funding_from_ccxt
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Side

RECORDING = recorded("bitget_mix.json")
EMPTY = {"code": "00000", "msg": "success", "data": []}


def bitget() -> ccxt.bitget:
    """A ccxt bitget whose swap markets come from the recorded contracts (USDT- and COIN-futures), on a
    classic (not unified) account: told so, ccxt asks no account settings of the network."""
    exchange = ccxt.bitget({"apiKey": "key", "secret": "secret", "password": "passphrase",
                            "options": {"fetchMarkets": {"types": ["swap"]}, "uta": False}})
    by_product = {"USDT-FUTURES": RECORDING["contracts_usdt_futures"],
                  "COIN-FUTURES": RECORDING["contracts_coin_futures"]}
    exchange.publicMixGetV2MixMarketContracts = lambda params: by_product.get(params["productType"], EMPTY)
    exchange.set_markets(exchange.fetch_markets())
    exchange.privateMixGetV2MixPositionAllPosition = lambda params: RECORDING["all_position"]
    exchange.privateMixGetV2MixOrderFills = lambda params: RECORDING["order_fills"]
    exchange.privateMixGetV2MixAccountBill = lambda params: RECORDING["account_bill"]
    return exchange


def instrument(exchange: ccxt.bitget, symbol: str) -> Instrument:
    return instrument_from_market(exchange.market(symbol), "bitget", exchange.precisionMode)


def test_bitget_usdt_perpetual_is_a_linear_contract_of_one_coin() -> None:
    btc = instrument(bitget(), "BTC/USDT:USDT")

    assert (btc.kind, btc.inverse, btc.settle, btc.contract_size) == (Kind.PERPETUAL, False, "USDT", 1)
    assert (btc.lot_step_contracts, btc.min_contracts) == (Decimal("0.001"), Decimal("0.001"))
    assert btc.funding_interval_secs == 8 * 3600  # fundInterval, in hours


def test_bitget_coin_margined_market_is_refused_not_sized_as_one_usd_per_coin() -> None:
    exchange = bitget()
    market: Any = exchange.market("BTC/USD:BTC")

    assert (market["inverse"], market["contractSize"], market["precision"]["amount"]) == (True, 1, 0.0001)
    with pytest.raises(MalformedPayload):  # amounts of 0.0001 BTC, which no USD face per contract describes
        instrument(exchange, "BTC/USD:BTC")


def test_bitget_positions_are_signed_coins_with_their_mark_liquidation_and_margins() -> None:
    exchange = bitget()
    btc = instrument(exchange, "BTC/USDT:USDT")

    long, short = (position_from_ccxt(raw, btc, "bitget") for raw in exchange.fetch_positions())

    assert (long.contracts, long.entry_price, long.mark_price) == (Decimal("0.002"), Decimal("37355.5"),
                                                                   Decimal("37370.5"))
    assert (long.unrealized_pnl, long.liquidation_price) == (Decimal("0.03"), Decimal("31725.023602417"))
    assert (long.margin_mode, long.leverage, long.initial_margin) == ("cross", 20, Decimal("3.73555"))
    assert short.contracts == Decimal("-0.004")
    assert btc.delta_coin(short.contracts, short.mark_price) == Decimal("-0.004")
    assert (short.unrealized_pnl, short.liquidation_price) == (Decimal("-0.06"), Decimal("45112.7"))


def test_bitget_fill_is_its_usdt_notional_with_its_fee_paid_positive() -> None:
    exchange = bitget()

    [trade] = exchange.fetch_my_trades("BTC/USDT:USDT")
    fill = fill_from_trade(trade, instrument(exchange, "BTC/USDT:USDT"), "bitget")

    assert (fill.trade_id, fill.exchange_order_id) == ("1111468664328269825", "1111468664264753162")
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, Decimal("0.001"), Decimal("37271.4"))
    assert fill.notional_usd == Decimal("37.2714")  # Bitget's quoteVolume
    assert (fill.fee, fill.fee_currency, fill.is_maker) == (Decimal("0.02236284"), "USDT", False)
    assert fill.ts == datetime(2023, 11, 23, 6, 25, 0, 342000, tzinfo=UTC)


def test_bitget_funding_paid_is_negative_and_received_positive_in_the_margin_coin() -> None:
    exchange = bitget()
    btc = instrument(exchange, "BTC/USDT:USDT")

    items = exchange.fetch_funding_history("BTC/USDT:USDT")
    paid, received = (funding_from_ccxt(item, btc, "bitget") for item in items)

    assert (paid.symbol, paid.amount, paid.currency) == ("BTC/USDT:USDT", Decimal("-0.004992"), "USDT")
    assert (received.amount, received.currency) == (Decimal("0.003117"), "USDT")
    assert (paid.payment_id, received.payment_id) == ("1111499428100472833", "1111499428100472834")
    assert paid.ts == datetime(2023, 11, 23, 8, 27, 14, 996000, tzinfo=UTC)
