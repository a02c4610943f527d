"""Binance COIN-M positions, fills and funding, against recorded payloads (fixtures/ccxt/README.md),
each through ccxt's own `binancecoinm` first (offline: the implicit API method is the recording)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from tests.unit.test_ccxt_parse import recorded

from deltakeeper.adapters.ccxt_account import position_from_ccxt
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.adapters.ccxt_trades import fill_from_trade, funding_from_ccxt
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Side

RECORDING = recorded("binancecoinm_futures.json")


def coinm(answers: dict[str, Any] | None = None) -> ccxt.binancecoinm:
    """A ccxt binancecoinm whose markets come from the recorded `dapi` exchange info, and whose account
    calls answer with `answers` (by implicit API method name)."""
    exchange = ccxt.binancecoinm({"options": {"fetchMarkets": {"types": ["inverse"]}}})
    exchange.dapiPublicGetExchangeInfo = lambda params: RECORDING["exchange_info"]
    exchange.set_markets(exchange.fetch_markets())
    exchange.dapiPrivateV2GetLeverageBracket = lambda params: []
    for method, answer in (answers or {}).items():
        setattr(exchange, method, lambda params, answer=answer: answer)
    return exchange


def instrument(exchange: ccxt.binancecoinm, symbol: str) -> Instrument:
    return instrument_from_market(exchange.market(symbol), "binancecoinm", exchange.precisionMode)


def test_coinm_perpetuals_are_inverse_usd_contracts_of_their_contract_size() -> None:
    exchange = coinm()

    btc, eth = instrument(exchange, "BTC/USD:BTC"), instrument(exchange, "ETH/USD:ETH")

    assert (btc.kind, btc.inverse, btc.settle, btc.contract_size) == (Kind.PERPETUAL, True, "BTC", 100)
    assert (eth.inverse, eth.settle, eth.contract_size) == (True, "ETH", 10)
    assert (btc.lot_step_contracts, btc.min_contracts) == (1, 1)


def test_coinm_positions_are_signed_usd_contracts_with_their_coin_delta_and_margins() -> None:
    exchange = coinm({"dapiPrivateGetPositionRisk": RECORDING["position_risk"]})

    parsed = {raw["symbol"]: raw for raw in exchange.fetch_positions()}
    long = position_from_ccxt(parsed["BTC/USD:BTC"], instrument(exchange, "BTC/USD:BTC"), "binancecoinm")
    short = position_from_ccxt(parsed["ETH/USD:ETH"], instrument(exchange, "ETH/USD:ETH"), "binancecoinm")

    assert long.contracts == 2
    assert (long.entry_price, long.mark_price) == (Decimal("37643.10000021"), Decimal("38103.05510455"))
    delta = instrument(exchange, "BTC/USD:BTC").delta_coin(long.contracts, long.mark_price)
    assert abs(delta - Decimal("0.00524892")) < Decimal("1e-8")  # Binance's notionalValue, in BTC
    assert long.liquidation_price == Decimal("25119.9744576")
    assert (long.margin_mode, long.unrealized_pnl) == ("isolated", Decimal("0.00006413"))
    assert parsed["ETH/USD:ETH"]["side"] is None  # no notionalValue: ccxt cannot tell the side
    assert short.contracts == -100  # read from Binance's signed positionAmt
    eth = instrument(exchange, "ETH/USD:ETH")
    assert eth.delta_coin(short.contracts, short.mark_price) == Decimal("-0.5")  # 1,000 USD / 2,000
    assert (short.unrealized_pnl, short.liquidation_price) == (Decimal("0.1"), None)


def test_coinm_fill_is_its_usd_face_with_its_fee_in_coin() -> None:
    exchange = coinm({"dapiPrivateGetUserTrades": RECORDING["user_trades"]})
    eth = instrument(exchange, "ETH/USD:ETH")

    [trade] = exchange.fetch_my_trades("ETH/USD:ETH")
    fill = fill_from_trade(trade, eth, "binancecoinm")

    assert (fill.trade_id, fill.exchange_order_id) == ("701907838", "71548909034")
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.SELL, 1, Decimal("2498.15"))
    assert fill.notional_usd == 10  # one 10 USD contract, not 2,498.15
    assert abs(10 / fill.price - Decimal("0.00400296")) < Decimal("1e-8")  # Binance's baseQty
    assert (fill.fee, fill.fee_currency, fill.is_maker) == (Decimal("0.0000016"), "ETH", False)
    assert fill.ts == datetime(2024, 2, 10, 1, 58, 37, 519000, tzinfo=UTC)


def test_coinm_funding_received_is_positive_and_paid_negative_in_the_margin_coin() -> None:
    exchange = coinm({"dapiPrivateGetIncome": RECORDING["income"]})
    btc = instrument(exchange, "BTC/USD:BTC")

    items = exchange.fetch_funding_history()  # the inverse (dapi) income: ccxt's binancecoinm default
    received, paid = (funding_from_ccxt(item, btc, "binancecoinm") for item in items)

    assert [item["symbol"] for item in items] == ["BTC/USD:BTC", "BTC/USD:BTC"]
    assert (received.amount, received.currency) == (Decimal("0.00000134"), "BTC")
    assert (paid.amount, paid.currency) == (Decimal("-0.00000211"), "BTC")
    assert (received.payment_id, paid.payment_id) == ("4480321991774044580", "4480321991774044581")
    assert paid.ts == datetime(2021, 5, 21, 16, tzinfo=UTC)


@pytest.mark.parametrize(("amount", "contracts"), [("-3", -3), ("3", 3)])
def test_a_binance_position_without_a_side_takes_its_sign_from_position_amt(amount: str,
                                                                           contracts: int) -> None:
    exchange = coinm()
    raw = RECORDING["position_risk"][1] | {"positionAmt": amount}

    position = position_from_ccxt(exchange.parse_position_risk(raw), instrument(exchange, "ETH/USD:ETH"),
                                  "binancecoinm")

    assert position.contracts == contracts
