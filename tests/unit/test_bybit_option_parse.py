"""Bybit's USDC options through ccxt's own parsers (offline, fixtures/ccxt/README.md) into the domain: the
market, the position with the venue's delta, and the delta the bot takes from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
from structlog.testing import capture_logs

from deltakeeper.adapters.ccxt_account import position_from_ccxt
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.domain.exposure import asset_deltas, option_delta
from deltakeeper.domain.instruments import Kind

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
SYMBOL = "BTC/USD:USDC-240126-39000-C"
AS_OF = datetime.fromtimestamp(1699584008326 / 1000, UTC)
"""The recorded ticker's time."""


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def bybit_with_option_markets() -> ccxt.bybit:
    exchange = ccxt.bybit({"options": {"fetchMarkets": {"types": ["option"], "options": ["BTC"]}}})
    exchange.publicGetV5MarketInstrumentsInfo = lambda params: recorded("bybit_option_instruments.json")
    exchange.publicGetV5MarketTickers = lambda params: recorded("bybit_option_ticker.json")
    exchange.set_markets(exchange.fetch_markets())
    return exchange


def test_bybit_usdc_option_market_is_an_option_settled_in_usdc_counted_in_coins() -> None:
    exchange = bybit_with_option_markets()
    call = instrument_from_market(exchange.market(SYMBOL), "bybit", exchange.precisionMode)

    assert (call.kind, call.inverse, call.contract_size) == (Kind.OPTION, False, 1)
    expiry = datetime(2024, 1, 26, 8, tzinfo=UTC)
    assert (call.strike, call.option_type, call.expiry) == (39_000, "call", expiry)
    assert (call.quote, call.settle, call.coin_settled, call.usd_margined) == ("USD", "USDC", False, True)
    assert (call.lot_step_contracts, call.min_contracts) == (D("0.01"), D("0.01"))


def test_bybit_option_position_delta_is_the_tickers_with_its_iv_never_the_rows_alone() -> None:
    exchange = bybit_with_option_markets()
    instrument = instrument_from_market(exchange.market(SYMBOL), "bybit", exchange.precisionMode)
    raw = exchange.parse_position(recorded("bybit_option_position.json"))
    ticker_greeks = exchange.fetch_greeks(SYMBOL)

    with capture_logs() as logs:
        from_row = position_from_ccxt(raw, instrument, "bybit")
        with_ticker = position_from_ccxt(raw, instrument, "bybit", ticker_greeks)

    assert (from_row.symbol, from_row.contracts, from_row.mark_price) == (SYMBOL, -2, D("3273.02263032"))
    assert (from_row.delta, from_row.mark_iv, from_row.underlying_price) == (None, None, None)
    assert with_ticker.delta == D("0.49640971")  # the row's -0.99281942 over -2 options agrees
    assert with_ticker.mark_iv == pytest.approx(0.5577)  # Bybit's markIv is a fraction
    assert with_ticker.underlying_price == D("37649.67254894")
    assert logs == []


def test_a_bybit_row_delta_of_one_option_is_not_taken_for_the_positions_and_is_logged_once() -> None:
    exchange = bybit_with_option_markets()
    instrument = instrument_from_market(exchange.market(SYMBOL), "bybit", exchange.precisionMode)
    row = {**recorded("bybit_option_position.json"), "size": "10", "delta": "-0.4964"}
    raw = exchange.parse_position(row)
    warned: set[str] = set()

    with capture_logs() as logs:
        positions = [position_from_ccxt(raw, instrument, "bybit", exchange.fetch_greeks(SYMBOL), warned)
                     for _ in range(2)]

    btc = asset_deltas({SYMBOL: instrument}, {}, positions[:1], {"BTC": D("36790.96")}, as_of=AS_OF)["BTC"]
    assert btc.option_delta_coin == D("-4.9640971")  # 10 short at the ticker's 0.49640971, not -0.4964
    assert [(e["event"], e["log_level"], e["symbol"]) for e in logs] == [
        ("option_row_delta_per_option", "warning", SYMBOL)]


def test_bybit_option_position_without_its_delta_takes_the_tickers() -> None:
    exchange = bybit_with_option_markets()
    instrument = instrument_from_market(exchange.market(SYMBOL), "bybit", exchange.precisionMode)
    row = recorded("bybit_option_position.json")
    raw = exchange.parse_position({**row, "delta": "", "gamma": "", "vega": "", "theta": ""})

    position = position_from_ccxt(raw, instrument, "bybit", {**exchange.fetch_greeks(SYMBOL), "delta": "0.5"})

    assert position.delta == D("0.5")


def test_short_usdc_calls_add_the_venues_delta_times_size_and_no_coin_for_their_value() -> None:
    exchange = bybit_with_option_markets()
    instrument = instrument_from_market(exchange.market(SYMBOL), "bybit", exchange.precisionMode)
    position = position_from_ccxt(exchange.parse_position(recorded("bybit_option_position.json")), instrument,
                                  "bybit", exchange.fetch_greeks(SYMBOL))

    one = option_delta(instrument, position, D("36790.96"), AS_OF)
    btc = asset_deltas({SYMBOL: instrument}, {}, [position], {"BTC": D("36790.96")}, as_of=AS_OF)["BTC"]

    assert (one.source, one.delta, one.delta_adj) == ("exchange", D("0.49640971"), D("0.49640971"))
    assert btc.delta_coin == btc.option_delta_coin == D("-0.99281942")
    assert btc.gamma_coin_per_usd == pytest.approx(-2 * 0.00004131, rel=5e-3)  # Black-76 at the venue's IV
