"""ccxt dicts into domain values, against recorded exchange payloads (fixtures/ccxt/README.md).

Each payload goes through ccxt's own parser first (offline: the implicit API method that would have
fetched it is replaced by the recording), so the tests see exactly what the adapter sees.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import ccxt.pro
import pytest
from ccxt.base.decimal_to_precision import DECIMAL_PLACES
from tests.unit.test_order_path import SOL, T0, Bot

from deltakeeper.adapters.ccxt_account import (
    balances_from_ccxt,
    check_bybit_account_answer,
    is_open_position,
    position_from_ccxt,
)
from deltakeeper.adapters.ccxt_markets import instrument_from_market, tiers_from_ccxt
from deltakeeper.adapters.ccxt_parse import (
    QUOTE_MAX_LEAD_SECS,
    RETRY_AFTER_MAX_SECS,
    MalformedPayload,
    bybit_key_can_withdraw,
    error_from_ccxt,
    quote_from_ticker,
    retry_after_secs,
)
from deltakeeper.adapters.ccxt_trades import (
    FillValueUnknown,
    fill_from_trade,
    funding_from_ccxt,
    is_funding_trade,
    is_liquidation_trade,
    order_from_ccxt,
)
from deltakeeper.adapters.portfolio_file import portfolio_from_json
from deltakeeper.app.risk_tracks import RiskTrack
from deltakeeper.domain.errors import (
    ConfigError,
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
)
from deltakeeper.domain.exposure import Position, asset_deltas
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.margin_tiers import MarginTier, cumulative_amounts_usd
from deltakeeper.domain.orders import OrderRequest, OrderStatus, OrderType, Side

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def bybit_with_markets(instruments: dict[str, Any] | None = None) -> ccxt.bybit:
    """A ccxt bybit whose markets come from the recorded instruments-info answers."""
    answers = instruments or {category: recorded(f"bybit_instruments_{category}.json")
                              for category in ("spot", "linear", "inverse")}
    exchange = ccxt.bybit({"options": {"fetchMarkets": {"types": ["spot", "linear", "inverse"]}}})

    def instruments_info(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("status") == "PreLaunch":
            return {"retCode": 0, "result": {"category": params["category"], "list": []}}
        return answers[params["category"]]

    exchange.publicGetV5MarketInstrumentsInfo = instruments_info
    exchange.set_markets(exchange.fetch_markets())
    return exchange


def bybit_instrument(exchange: ccxt.bybit, symbol: str) -> Instrument:
    return instrument_from_market(exchange.market(symbol), "bybit", exchange.precisionMode)


def test_bybit_markets_become_spot_linear_and_inverse_instruments() -> None:
    exchange = bybit_with_markets()

    spot = bybit_instrument(exchange, "BTC/USDT")
    linear = bybit_instrument(exchange, "BTC/USDT:USDT")
    inverse = bybit_instrument(exchange, "BTC/USD:BTC")

    assert (spot.kind, spot.settle, spot.contract_size) == (Kind.SPOT, "USDT", 1)
    assert (spot.lot_step_contracts, spot.min_notional_usd) == (Decimal("0.000001"), 5)
    assert spot.funding_interval_secs is None
    assert (linear.kind, linear.inverse, linear.contract_size) == (Kind.PERPETUAL, False, 1)
    assert (linear.lot_step_contracts, linear.min_contracts) == (Decimal("0.001"), Decimal("0.001"))
    assert linear.min_notional_usd == 5
    assert linear.funding_interval_secs == 8 * 3600
    assert linear.expiry is None
    assert (inverse.inverse, inverse.settle, inverse.contract_size) == (True, "BTC", 1)
    assert inverse.lot_step_contracts == 1


def test_bybit_funding_interval_is_read_from_the_market_not_assumed() -> None:
    linear = recorded("bybit_instruments_linear.json")
    linear["result"]["list"][0]["fundingInterval"] = 240
    exchange = bybit_with_markets({"spot": recorded("bybit_instruments_spot.json"), "linear": linear,
                                   "inverse": recorded("bybit_instruments_inverse.json")})

    assert bybit_instrument(exchange, "BTC/USDT:USDT").funding_interval_secs == 4 * 3600


def test_lot_step_given_in_decimal_places_is_turned_into_a_step() -> None:
    market = {"symbol": "BTC/EUR", "type": "spot", "base": "BTC", "quote": "EUR",
              "precision": {"amount": 8}, "limits": {"amount": {"min": 0.0001}}}

    instrument = instrument_from_market(market, "someexchange", DECIMAL_PLACES)
    significant = instrument_from_market(market, "bitfinex", ccxt.bitfinex().precisionMode)

    assert instrument.lot_step_contracts == Decimal("1E-8")
    assert significant.lot_step_contracts == Decimal("0.0001")


def test_okx_swap_contract_size_makes_250_contracts_two_and_a_half_btc() -> None:
    exchange = ccxt.okx()
    market = exchange.parse_market(recorded("okx_instrument_swap.json"))
    exchange.set_markets([market])
    instrument = instrument_from_market(market, "okx", exchange.precisionMode)

    position = position_from_ccxt(exchange.parse_position(recorded("okx_position.json")), instrument, "okx")

    assert (instrument.symbol, instrument.contract_size) == ("BTC/USDT:USDT", Decimal("0.01"))
    assert instrument.delta_coin(Decimal(250), Decimal(60000)) == Decimal("2.5")
    assert position.contracts == 1
    assert instrument.delta_coin(position.contracts, position.mark_price) == Decimal("0.01")
    assert position.unrealized_pnl == Decimal("0.0108608358957281")


def deribit_with_markets() -> ccxt.deribit:
    exchange = ccxt.deribit()
    exchange.publicGetGetInstruments = lambda params: recorded("deribit_instruments.json")
    exchange.set_markets(exchange.fetch_markets())
    return exchange


def test_deribit_usd_position_is_its_face_over_the_mark() -> None:
    exchange = deribit_with_markets()
    instrument = instrument_from_market(exchange.market("BTC/USD:BTC"), "deribit", exchange.precisionMode)
    positions = recorded("deribit_positions.json")

    short = position_from_ccxt(exchange.parse_position(positions["reference_short"]), instrument, "deribit")
    long = position_from_ccxt(exchange.parse_position(positions["docs_example"]), instrument, "deribit")

    assert (instrument.contract_size, instrument.lot_step_contracts) == (1, 10)
    assert short.contracts == -100
    assert abs(instrument.delta_coin(short.contracts, short.mark_price) - Decimal("-9.65675e-4")) < Decimal(
        "1e-9")
    assert abs(instrument.delta_coin(long.contracts, long.mark_price) - Decimal("0.006687487")) < Decimal(
        "1e-9")
    assert instrument.notional_usd(short.contracts, short.mark_price) == 100


def test_deribit_perpetual_has_no_expiry_and_its_dated_future_has_one() -> None:
    exchange = deribit_with_markets()
    perpetual, future = (instrument_from_market(exchange.market(symbol), "deribit")
                         for symbol in ("BTC/USD:BTC", "BTC/USD:BTC-220527"))

    assert (perpetual.kind, perpetual.expiry) == (Kind.PERPETUAL, None)
    assert perpetual.funding_interval_secs == 8 * 3600
    assert (future.kind, future.expiry) == (Kind.FUTURE, datetime(2022, 5, 27, 8, tzinfo=UTC))


def test_bybit_inverse_position_is_short_usd_contracts_with_its_pnl_in_coin() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    raw = recorded("bybit_position_inverse.json")["result"]["list"][0]

    position = position_from_ccxt(exchange.parse_position(raw), instrument, "bybit")

    assert position.contracts == -300
    assert position.mark_price == Decimal("28224.50")
    assert position.unrealized_pnl == Decimal("-0.00029413")
    delta = instrument.delta_coin(position.contracts, position.mark_price)
    assert abs(delta - Decimal("-0.0106290634")) < Decimal("1e-10")


def test_bybit_zero_unrealised_pnl_is_zero_not_unknown() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    raw = recorded("bybit_position_inverse.json")["result"]["list"][0] | {"unrealisedPnl": "0"}

    parsed = exchange.parse_position(raw)
    position = position_from_ccxt(parsed, instrument, "bybit")

    assert parsed["unrealizedPnl"] != 0  # ccxt drops the zero and derives a figure of its own
    assert position.unrealized_pnl == 0


# The exchange's margin figures on a position


def test_bybit_position_carries_its_margins_and_no_liquidation_price_where_bybit_leaves_it_empty() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    raw = recorded("bybit_position_inverse.json")["result"]["list"][0]

    position = position_from_ccxt(exchange.parse_position(raw), instrument, "bybit")

    assert raw["liqPrice"] == "" and position.liquidation_price is None
    assert position.initial_margin == Decimal(raw["positionIM"])
    assert position.maintenance_margin == Decimal(raw["positionMM"])
    assert position.leverage == Decimal(raw["leverage"])
    # ccxt's collateral: the position's margin plus its PnL; Bybit's positions say nothing of the mode.
    assert position.collateral == Decimal(raw["positionBalance"]) + Decimal(raw["unrealisedPnl"])
    assert position.margin_mode is None


def test_bybit_liquidation_price_is_read_and_a_zero_one_is_none() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    raw = recorded("bybit_position_inverse.json")["result"]["list"][0]

    priced = position_from_ccxt(exchange.parse_position(raw | {"liqPrice": "41537.5"}), instrument, "bybit")
    zero = position_from_ccxt(exchange.parse_position(raw | {"liqPrice": "0"}), instrument, "bybit")

    assert priced.liquidation_price == Decimal("41537.5")
    assert zero.liquidation_price is None


def test_okx_cross_position_carries_its_liquidation_price_margins_and_mode() -> None:
    exchange = ccxt.okx()
    market = exchange.parse_market(recorded("okx_instrument_swap.json"))
    exchange.set_markets([market])
    instrument = instrument_from_market(market, "okx", exchange.precisionMode)
    raw = recorded("okx_position.json")

    position = position_from_ccxt(exchange.parse_position(raw), instrument, "okx")

    assert position.liquidation_price == Decimal(raw["liqPx"])
    assert position.initial_margin == Decimal(raw["imr"])
    assert position.maintenance_margin == Decimal(raw["mmr"])
    assert position.leverage == Decimal(raw["lever"])
    assert position.margin_mode == raw["mgnMode"] == "cross"


def test_deribit_position_carries_its_estimated_liquidation_price_and_margins() -> None:
    exchange = deribit_with_markets()
    instrument = instrument_from_market(exchange.market("BTC/USD:BTC"), "deribit", exchange.precisionMode)
    raw = recorded("deribit_positions.json")

    position = position_from_ccxt(exchange.parse_position(raw["docs_example"]), instrument, "deribit")
    bare = position_from_ccxt(exchange.parse_position(raw["reference_short"]), instrument, "deribit")

    assert position.liquidation_price == Decimal("1.74")
    assert (position.initial_margin, position.maintenance_margin) == (Decimal("0.000197283"),
                                                                      Decimal("0.000143783"))
    assert position.leverage == 34
    assert position.collateral is None
    assert (bare.liquidation_price, bare.initial_margin, bare.maintenance_margin, bare.leverage) == (
        None, None, None, None)


@pytest.mark.parametrize(("field", "value"), [
    ("liquidationPrice", "soon"),
    ("initialMargin", "-1"),
    ("maintenanceMargin", "NaN"),
    ("collateral", [1]),
    ("leverage", "10x"),
    ("marginMode", "portfolio"),
])
def test_a_malformed_margin_figure_is_a_malformed_payload(field: str, value: object) -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    parsed = exchange.parse_position(recorded("bybit_position_inverse.json")["result"]["list"][0])

    with pytest.raises(MalformedPayload) as caught:
        position_from_ccxt(parsed | {field: value}, instrument, "bybit")

    assert caught.value.field == field


def bybit_tiers() -> list[dict[str, Any]]:
    exchange = bybit_with_markets()
    exchange.publicGetV5MarketRiskLimit = lambda params: recorded("bybit_risk_limit_linear.json")
    return list(exchange.fetch_market_leverage_tiers("BTC/USDT:USDT"))


def test_bybit_risk_limits_become_a_contiguous_maintenance_table() -> None:
    tiers = tiers_from_ccxt(bybit_tiers())

    assert tiers == (
        MarginTier(Decimal(0), Decimal(2_000_000), Decimal("0.005")),
        MarginTier(Decimal(2_000_000), Decimal(4_000_000), Decimal("0.01")),
        MarginTier(Decimal(4_000_000), Decimal(8_000_000), Decimal("0.02")),
    )
    # Bybit's mmDeduction is the table's cumulative amount: MM stays continuous across tiers.
    deductions = [Decimal(row["mmDeduction"] or 0)
                  for row in recorded("bybit_risk_limit_linear.json")["result"]["list"]]
    assert cumulative_amounts_usd(tiers) == deductions


def test_a_last_tier_without_a_cap_goes_on_and_a_gap_is_malformed() -> None:
    uncapped = bybit_tiers()
    uncapped[-1] = uncapped[-1] | {"maxNotional": None}
    gap = bybit_tiers()
    gap[1] = gap[1] | {"minNotional": 2_500_000}

    assert tiers_from_ccxt(uncapped)[-1].cap_usd == Decimal("Infinity")
    with pytest.raises(MalformedPayload, match="contiguous"):
        tiers_from_ccxt(gap)
    with pytest.raises(MalformedPayload, match="maintenanceMarginRate"):
        tiers_from_ccxt([uncapped[0] | {"maintenanceMarginRate": 1.5}])
    with pytest.raises(MalformedPayload):
        tiers_from_ccxt([])


def test_bybit_rest_wallet_balance_is_wallet_balance() -> None:
    balance = ccxt.bybit().parse_balance(recorded("bybit_wallet_balance.json"))

    assert balances_from_ccxt(balance, "bybit") == {"BTC": Decimal("0.805994")}


def test_bybit_websocket_wallet_balance_excludes_unrealised_pnl_where_ccxt_reports_equity() -> None:
    exchange = ccxt.pro.bybit()
    resolved: dict[str, Any] = {}

    class Client:
        def resolve(self, result: Any, message_hash: str) -> None:
            resolved[message_hash] = copy.deepcopy(result)

    exchange.handle_balance(Client(), recorded("bybit_ws_wallet.json"))
    balance = resolved["balances:unified"]

    wallet = balances_from_ccxt(balance, "bybit")

    assert balance["total"]["USDC"] == pytest.approx(200.62572554)  # ccxt: equity, PnL included
    assert wallet["USDC"] == Decimal("201.34882644")
    assert wallet["USDT"] == Decimal("11728.54414904")
    assert wallet["BTC"] == Decimal("0.06488393")
    assert "ETH" not in wallet


@pytest.mark.parametrize("answer", [
    {"retCode": 0, "retMsg": "OK", "retExtInfo": {}, "time": 1},  # no result
    {"retCode": 0, "result": {"list": {"coin": "USDT"}}},  # a list that is not a list
    {"retCode": 0, "result": {"list": []}},  # no account
    {"retCode": 0, "result": {"list": [{"coin": [{"usdValue": "1"}]}]}},  # a coin without its fields
    {"retCode": 0, "result": {"list": [{"coin": [{"coin": "USDT", "walletBalance": "NaN"}]}]}},
    {"retCode": 0, "result": {"list": [{"coin": [{"coin": "USDT", "walletBalance": ""}]}]}},
    {"retCode": 0, "result": {"list": [{"coin": "USDT"}]}},  # coins that are not a list
])
def test_a_malformed_bybit_wallet_answer_is_unreadable_not_empty(answer: dict[str, Any]) -> None:
    balance = ccxt.bybit().parse_balance(answer)

    with pytest.raises(MalformedPayload):
        balances_from_ccxt(balance, "bybit")


def test_an_empty_bybit_wallet_reads_empty() -> None:
    balance = ccxt.bybit().parse_balance({"retCode": 0, "result": {"list": [{"coin": []}]}})

    assert balances_from_ccxt(balance, "bybit") == {}


@pytest.mark.parametrize(("exchange_id", "balance"), [
    ("okx", {"info": {"code": "0"}, "total": {}}),
    ("okx", {"info": {"data": [{"details": [{"ccy": "USDT"}]}]}, "total": {}}),
    ("deribit", {"info": {}, "total": {}}),
    ("deribit", {"info": {"summaries": "none"}, "total": {}}),
    ("binance", {"info": {}}),
    ("binance", {"info": {}, "total": {"USDT": float("nan")}}),
    ("binance", {"info": {}, "total": {"USDT": "12,5"}}),
])
def test_a_malformed_balance_elsewhere_is_unreadable_not_empty(exchange_id: str,
                                                             balance: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        balances_from_ccxt(balance, exchange_id)


def test_okx_and_other_balances_read_whole() -> None:
    details = [{"ccy": "USDT", "cashBal": "12.5"}, {"ccy": "BTC", "cashBal": "0"}]
    okx = {"info": {"data": [{"details": details}]}}

    assert balances_from_ccxt(okx, "okx") == {"USDT": Decimal("12.5")}
    assert balances_from_ccxt({"info": {}, "total": {"USDT": 3.0, "BTC": 0, "ETH": None}},
                              "binance") == {"USDT": 3}


@pytest.mark.parametrize("answer", [
    {"retCode": 0, "retMsg": "OK"},
    {"retCode": 0, "result": None},
    {"retCode": 0, "result": {"list": "none"}},
    {"retCode": 0, "result": {"list": ["BTCUSDT"]}},
    "<html>502</html>",
    None,
])
def test_a_bybit_account_answer_without_its_list_is_malformed(answer: object) -> None:
    for path in ("/v5/account/wallet-balance", "/v5/position/list"):
        with pytest.raises(MalformedPayload):
            check_bybit_account_answer(path, answer)


def test_bybit_account_answers_with_their_list_and_other_answers_pass() -> None:
    check_bybit_account_answer("/v5/position/list", {"retCode": 0, "result": {"list": []}})
    check_bybit_account_answer("/v5/position/list", {"retCode": 10006, "result": {}})  # ccxt's to refuse
    check_bybit_account_answer("/v5/order/realtime", {"retCode": 0})


def test_a_bybit_position_without_its_side_or_size_is_unreadable_not_long_or_flat() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    raw = recorded("bybit_position_inverse.json")["result"]["list"][0]

    without_side = exchange.parse_position({key: value for key, value in raw.items() if key != "side"})
    without_size = exchange.parse_position({key: value for key, value in raw.items() if key != "size"})

    with pytest.raises(MalformedPayload, match="side"):
        position_from_ccxt(without_side, instrument, "bybit")
    with pytest.raises(MalformedPayload, match="contracts"):
        is_open_position(without_size)
    assert is_open_position(exchange.parse_position(raw))
    assert not is_open_position(exchange.parse_position(raw | {"size": "0", "side": ""}))


def test_retry_after_is_read_in_seconds_capped_and_ignored_when_unreadable() -> None:
    reset_ms = int(NOW.timestamp() * 1000) + 2500

    assert retry_after_secs({"Retry-After": "7"}, NOW) == 7
    assert retry_after_secs({"retry-after": "0.5"}, NOW) == 0.5
    assert retry_after_secs({"Retry-After": "86400"}, NOW) == RETRY_AFTER_MAX_SECS == 60
    assert retry_after_secs({"X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}, NOW) == 2.5
    assert retry_after_secs({"X-Bapi-Limit-Reset-Timestamp": str(reset_ms - 10_000)}, NOW) == 0
    for unreadable in ("Wed, 21 Oct 2026 07:28:00 GMT", "soon", "-5", "nan", "inf", ""):
        assert retry_after_secs({"Retry-After": unreadable}, NOW) is None
    assert retry_after_secs({}, NOW) is None


def test_deribit_balance_is_the_balance_field() -> None:
    balance = ccxt.deribit().parse_balance(recorded("deribit_account_summary.json")["result"])

    assert balances_from_ccxt(balance, "deribit") == {"BTC": Decimal("0.00062359")}


COIN_M_BTC = Instrument("BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True,
                        contract_size=Decimal(100))
COIN_M_SHORT_IN_PROFIT = Position("BTC/USD:BTC", contracts=Decimal(-100), entry_price=Decimal(50000),
                                  mark_price=Decimal(40000), unrealized_pnl=Decimal("0.05"))
"""A short of 100 USD contracts (10,000 USD face) opened at 50,000, marked at 40,000: in profit by
10,000 x (1/40,000 - 1/50,000) = 0.05 BTC."""


def btc_delta(wallet: dict[str, Decimal]) -> Decimal:
    """The BTC delta of `wallet` with the coin-margined short in profit."""
    deltas = asset_deltas({"BTC/USD:BTC": COIN_M_BTC}, wallet, [COIN_M_SHORT_IN_PROFIT],
                          {"BTC": Decimal(40000)})
    return deltas["BTC"].delta_coin


def test_binance_usdm_balance_is_the_wallet_balance_not_the_margin_balance() -> None:
    exchange = ccxt.binanceusdm()
    exchange.set_markets([])
    exchange.fapiPrivateV3GetAccount = lambda params: recorded("binanceusdm_account.json")

    balance = exchange.fetch_balance()

    assert balance["total"]["USDT"] == pytest.approx(83.90238613)  # ccxt: marginBalance, PnL included
    assert balances_from_ccxt(balance, "binanceusdm") == {"USDT": Decimal("72.72317863")}


def test_binance_coinm_wallet_of_one_btc_with_a_short_in_profit_is_one_btc() -> None:
    exchange = ccxt.binancecoinm()
    exchange.set_markets([])
    exchange.dapiPrivateGetAccount = lambda params: recorded("binancecoinm_account.json")

    balance = exchange.fetch_balance()
    wallet = balances_from_ccxt(balance, "binancecoinm")

    assert balance["total"]["BTC"] == pytest.approx(1.05)
    assert wallet == {"BTC": Decimal(1)}  # ETH: never initialised (updateTime 0), as ccxt skips it
    assert btc_delta(wallet) == Decimal("0.8")  # 1 + 0.05 PnL - 10,000 / 40,000


def test_okx_wallet_of_one_btc_with_a_short_in_profit_is_its_cash_balance() -> None:
    exchange = ccxt.okx()
    exchange.set_markets([])
    exchange.privateGetAccountBalance = lambda params: recorded("okx_account_balance.json")

    balance = exchange.fetch_balance()
    wallet = balances_from_ccxt(balance, "okx")

    assert balance["total"]["BTC"] == pytest.approx(1.05)  # ccxt: eq, PnL included
    assert wallet == {"USDT": Decimal("28.21006347"), "BTC": Decimal(1)}
    assert btc_delta(wallet) == Decimal("0.8")


def bitget_balance(product: str) -> dict[str, Any]:
    exchange = ccxt.bitget({"apiKey": "key", "secret": "secret", "password": "passphrase"})
    exchange.set_markets([])
    exchange.privateMixGetV2MixAccountAccounts = lambda params: recorded("bitget_mix_accounts.json")[product]
    sub_type = "inverse" if product == "coin_futures" else "linear"
    return exchange.fetch_balance({"type": "swap", "subType": sub_type})


def test_bitget_coinm_wallet_of_one_btc_with_a_short_in_profit_is_one_btc_not_one_point_05() -> None:
    balance = bitget_balance("coin_futures")
    wallet = balances_from_ccxt(balance, "bitget")

    assert balance["total"]["BTC"] == pytest.approx(1.05)  # ccxt: accountEquity, PnL included
    assert wallet == {"BTC": Decimal(1)}
    assert btc_delta(wallet) == Decimal("0.8")
    assert btc_delta({"BTC": Decimal("1.05")}) == Decimal("0.85")  # the PnL counted twice
    assert balances_from_ccxt(bitget_balance("usdt_futures"), "bitget") == {}


def test_bitget_spot_balance_is_ccxts_total() -> None:
    spot = [{"coin": "BTC", "available": "0.5", "limitAvailable": "0", "frozen": "0.1", "locked": "0",
             "uTime": "1699937566000"}]

    assert balances_from_ccxt(ccxt.bitget().parse_balance(spot), "bitget") == {"BTC": Decimal("0.6")}


def test_hyperliquid_balance_is_the_account_value_less_the_positions_pnl() -> None:
    exchange = ccxt.hyperliquid({"walletAddress": "0x0000000000000000000000000000000000000001",
                                 "options": {"enableUnifiedMargin": False}})
    exchange.set_markets([])
    exchange.publicPostInfo = lambda params: recorded("hyperliquid_clearinghouse_state.json")

    balance = exchange.fetch_balance({"type": "swap"})

    assert balance["total"]["USDC"] == pytest.approx(108.15499)  # ccxt: accountValue, PnL included
    assert balances_from_ccxt(balance, "hyperliquid") == {"USDC": Decimal(100)}


@pytest.mark.parametrize(("exchange_id", "info"), [
    ("binanceusdm", {"assets": [{"asset": "USDT", "updateTime": 1}]}),
    ("binancecoinm", {"assets": "BTC"}),
    ("hyperliquid", {"marginSummary": {"accountValue": "1"}, "assetPositions": [{"position": {}}]}),
    ("hyperliquid", {"marginSummary": None}),
    ("bitget", [{"marginCoin": "BTC", "accountEquity": "1"}]),  # no unrealizedPL
])
def test_a_malformed_futures_wallet_is_unreadable_not_empty(exchange_id: str, info: Any) -> None:
    with pytest.raises(MalformedPayload):
        balances_from_ccxt({"info": info, "total": {}}, exchange_id)


def test_bybit_funding_received_is_positive() -> None:
    exchange = bybit_with_markets()
    instrument = Instrument("XMR/USDT:USDT", Kind.PERPETUAL, "XMR", "USDT", "USDT")
    item = exchange.parse_income(recorded("bybit_execution_funding.json"))

    payment = funding_from_ccxt(item, instrument, "bybit")

    assert item["amount"] == pytest.approx(-0.10232512)  # ccxt passes Bybit's "paid" sign through
    assert payment.amount == Decimal("0.10232512")
    assert (payment.currency, payment.rate) == ("USDT", Decimal("-0.000761"))
    assert payment.position_contracts == Decimal("0.98")  # a long receives at a negative rate
    assert payment.payment_id == "8d1ef156-4ec6-4445-9a6c-1c0c24dbd046"
    assert payment.ts == datetime(2024, 3, 20, 16, tzinfo=UTC)


def test_bybit_funding_paid_is_negative_and_settles_in_the_inverse_coin() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USD:BTC")
    raw = recorded("bybit_execution_funding.json") | {"symbol": "BTCUSD", "execFee": "0.0000012",
                                                      "feeRate": "0.0001", "execQty": "300"}

    payment = funding_from_ccxt(exchange.parse_income(raw), instrument, "bybit")

    assert (payment.amount, payment.currency) == (Decimal("-0.0000012"), "BTC")
    assert payment.position_contracts == 300


def test_okx_funding_income_is_positive() -> None:
    exchange = ccxt.okx()
    exchange.privateGetAccountBillsArchive = lambda params: {"code": "0", "data": [
        recorded("okx_funding_bill.json")]}
    exchange.set_markets([])
    instrument = Instrument("ETH/USD:ETH", Kind.PERPETUAL, "ETH", "USD", "ETH", inverse=True,
                            contract_size=Decimal(10))

    [item] = exchange.fetch_funding_history()
    payment = funding_from_ccxt(item, instrument, "okx")

    assert (payment.amount, payment.currency) == (Decimal("0.0000148752712240"), "ETH")
    assert payment.payment_id == "377970609204146187"


def test_bybit_execution_is_a_fill_with_its_usd_notional() -> None:
    exchange = bybit_with_markets()
    raw = recorded("bybit_execution_trade.json")["result"]["list"][0]
    instrument = Instrument("ETH/USDC:USDC", Kind.PERPETUAL, "ETH", "USDC", "USDC")

    trade = exchange.parse_trade(raw)
    fill = fill_from_trade(trade, instrument, "bybit")

    assert not is_funding_trade(trade, "bybit")
    assert (fill.trade_id, fill.exchange_order_id) == ("e0cbe81d-0f18-5866-9415-cf319b5dab3b",
                                                       "8c065341-7b52-4ca9-ac2c-37e31ac55c94")
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, Decimal("0.1"), Decimal("1190.15"))
    assert (fill.fee, fill.fee_currency, fill.is_maker) == (Decimal("0.071409"), "USDC", False)
    assert fill.notional_usd == Decimal("119.015")
    assert fill.client_order_id is None
    assert is_funding_trade(exchange.parse_trade(recorded("bybit_execution_funding.json")), "bybit")
    assert not fill.liquidation


def test_binance_spot_bnb_btc_fill_is_valued_in_btc_at_btcs_usd_price() -> None:
    exchange = ccxt.binance()
    exchange.set_markets([{"id": "BNBBTC", "symbol": "BNB/BTC", "base": "BNB", "quote": "BTC",
                           "baseId": "BNB", "quoteId": "BTC", "type": "spot", "spot": True, "margin": False,
                           "swap": False, "future": False, "option": False, "contract": False, "linear": None,
                           "inverse": None, "active": True}])
    instrument = Instrument("BNB/BTC", Kind.SPOT, "BNB", "BTC", "BTC")
    trade = exchange.parse_trade(recorded("binance_spot_my_trade.json"))

    fill = fill_from_trade(trade, instrument, "binance", value_coin_usd=Decimal(30000))

    assert (fill.amount_contracts, fill.price) == (12, Decimal("4.000001"))
    assert fill.notional_usd == Decimal("1440000.36")  # 48.000012 BTC x 30,000, not "48 USD"
    with pytest.raises(FillValueUnknown) as unknown:
        fill_from_trade(trade, instrument, "binance")
    assert unknown.value.currency == "BTC"


def test_deribit_eth_option_fill_is_its_premium_at_the_trades_eth_index() -> None:
    exchange = ccxt.deribit()
    recording = recorded("deribit_option_user_trade.json")
    exchange.publicGetGetInstruments = lambda params: {"result": [recording["instrument"]]}
    exchange.set_markets(exchange.fetch_markets())
    market = exchange.market("ETH/USD:ETH-190222-120-C")
    instrument = instrument_from_market(market, "deribit", exchange.precisionMode)

    fill = fill_from_trade(exchange.parse_trade(recording["trade"], market), instrument, "deribit")

    assert (instrument.kind, instrument.settle, instrument.contract_size) == (Kind.OPTION, "ETH", 1)
    assert (fill.amount_contracts, fill.price) == (11, Decimal("0.04"))
    assert fill.notional_usd == Decimal("53.4028")  # 11 x 0.04 = 0.44 ETH x the ETH index 121.37
    assert (fill.fee, fill.fee_currency) == (Decimal("0.0011"), "ETH")


def test_bybit_linear_fill_in_a_stablecoin_is_its_notional_as_is() -> None:
    exchange = bybit_with_markets()
    instrument = bybit_instrument(exchange, "BTC/USDT:USDT")
    raw = recorded("bybit_execution_trade.json")["result"]["list"][0] | {"symbol": "BTCUSDT"}

    fill = fill_from_trade(exchange.parse_trade(raw), instrument, "bybit", value_coin_usd=Decimal(7))

    assert fill.notional_usd == Decimal("119.015")  # 0.1 x 1190.15 USDT: no conversion asked for


def test_okx_inverse_fill_is_its_usd_face() -> None:
    exchange = ccxt.okx()
    recording = recorded("okx_inverse_fill.json")
    market = exchange.parse_market(recording["instrument"])
    exchange.set_markets([market])
    instrument = instrument_from_market(market, "okx", exchange.precisionMode)

    fill = fill_from_trade(exchange.parse_trade(recording["fill"]), instrument, "okx")

    assert (instrument.symbol, instrument.inverse, instrument.contract_size) == ("BTC/USD:BTC", True, 100)
    assert fill.notional_usd == 200  # 2 contracts of 100 USD face
    assert (fill.client_order_id, fill.fee_currency) == ("dk1a0", "BTC")


@pytest.mark.parametrize("exec_type", ["BustTrade", "AdlTrade"])
def test_bybit_takeover_and_adl_executions_are_liquidation_fills(exec_type: str) -> None:
    exchange = bybit_with_markets()
    instrument = Instrument("ETH/USDC:USDC", Kind.PERPETUAL, "ETH", "USDC", "USDC")
    raw = recorded("bybit_execution_busttrade.json") | {"execType": exec_type}

    trade = exchange.parse_trade(raw)
    fill = fill_from_trade(trade, instrument, "bybit")

    assert not is_funding_trade(trade, "bybit")
    assert fill.liquidation
    assert (fill.trade_id, fill.exchange_order_id) == ("3f9d51c2-8b0e-5a7f-9c24-61e2d0a4b8e3",
                                                       "5c7b3a8e-2f14-4d0b-9a61-0e53c2b1f7d4")
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, Decimal("0.1"), Decimal("1190.15"))
    assert (fill.fee, fill.client_order_id) == (Decimal("0.071409"), None)
    assert not is_liquidation_trade(trade, "okx")  # the field is Bybit's: another exchange's is not read


def test_deribit_trade_is_a_liquidation_only_where_the_accounts_side_was_under_liquidation() -> None:
    exchange = ccxt.deribit()
    trades = recorded("deribit_user_trades_liquidation.json")
    instrument = Instrument("ETH/USD:ETH", Kind.PERPETUAL, "ETH", "USD", "ETH", inverse=True)

    ours = fill_from_trade(exchange.parse_trade(trades["ours"]), instrument, "deribit")
    counterparty = fill_from_trade(exchange.parse_trade(trades["counterparty"]), instrument, "deribit")
    by_order_type = exchange.parse_trade(trades["counterparty"] | {"order_type": "liquidation"})

    assert ours.liquidation  # taker, and the taker side was under liquidation
    assert (ours.side, ours.amount_contracts, ours.price) == (Side.BUY, 30, Decimal("142.15"))
    assert not counterparty.liquidation  # the maker's counterparty was liquidated, not this account
    assert is_liquidation_trade(by_order_type, "deribit")


def test_binance_autoclose_and_adl_orders_are_liquidations_and_a_settlement_is_not() -> None:
    exchange = ccxt.pro.binanceusdm()
    raw = recorded("binance_ws_trade_autoclose.json")
    instrument = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT")

    fill = fill_from_trade(exchange.parse_ws_trade(raw), instrument, "binanceusdm")
    adl = exchange.parse_ws_trade(raw | {"c": "adl_autoclose"})
    settlement = exchange.parse_ws_trade(raw | {"c": "settlement_autoclose-1596107620040000021"})
    own = exchange.parse_ws_trade(raw | {"c": "dk1a0", "o": "MARKET", "ot": "MARKET"})

    assert fill.liquidation
    assert (fill.trade_id, fill.exchange_order_id, fill.client_order_id) == ("458032604", "13351197194", None)
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, Decimal("0.001"), Decimal("33468.46"))
    assert is_liquidation_trade(adl, "binance")
    assert not is_liquidation_trade(settlement, "binanceusdm")
    assert not is_liquidation_trade(own, "binanceusdm")


@pytest.mark.parametrize(("sub_type", "liquidation"), [("105", True), ("100", True), ("128", True),
                                                       ("6", False), ("3", False)])
def test_okx_liquidation_and_adl_sub_types_are_liquidations(sub_type: str, liquidation: bool) -> None:
    exchange = ccxt.okx()
    instrument = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT",
                            contract_size=Decimal("0.01"))

    raw = recorded("okx_fill_liquidation.json") | {"subType": sub_type}
    fill = fill_from_trade(exchange.parse_trade(raw), instrument, "okx")

    assert fill.liquidation is liquidation
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, 2, Decimal("30120.5"))
    assert fill.client_order_id is None


def test_bybit_order_acknowledgement_is_open_with_the_request_details() -> None:
    exchange = bybit_with_markets()
    request = OrderRequest("dk1a0", "BTC/USDT:USDT", Side.SELL, Decimal("0.01"))

    order = exchange.parse_order({"orderId": "1321003749386327552", "orderLinkId": "dk1a0"})
    state = order_from_ccxt(order, NOW, request)

    assert (state.status, state.exchange_order_id, state.client_order_id) == (
        OrderStatus.OPEN, "1321003749386327552", "dk1a0")
    assert (state.side, state.amount_contracts, state.order_type) == (Side.SELL, Decimal("0.01"),
                                                                      OrderType.MARKET)


@pytest.mark.parametrize(("status", "filled", "expected"), [
    ("open", 0, OrderStatus.OPEN), ("open", 1, OrderStatus.PARTIALLY_FILLED),
    ("closed", 2, OrderStatus.FILLED), ("closed", 1, OrderStatus.CANCELED),
    ("canceled", 0, OrderStatus.CANCELED), ("rejected", 0, OrderStatus.REJECTED),
])
def test_order_status_follows_ccxt_status_and_fill(status: str, filled: int, expected: OrderStatus) -> None:
    order = {"id": "1", "symbol": "BTC/USDT:USDT", "side": "buy", "type": "limit", "amount": 2,
             "filled": filled, "status": status, "price": 100, "timestamp": 1700000000000}

    assert order_from_ccxt(order, NOW).status is expected


def test_order_with_an_unknown_status_is_malformed() -> None:
    order = {"id": "1", "symbol": "X", "side": "buy", "type": "limit", "amount": 2, "status": "weird"}

    with pytest.raises(MalformedPayload):
        order_from_ccxt(order, NOW)


def test_bybit_tickers_become_quotes_with_mark_index_and_funding() -> None:
    exchange = bybit_with_markets()
    tickers = recorded("bybit_tickers.json")

    inverse = quote_from_ticker(exchange.parse_ticker(tickers["inverse"]["result"]["list"][0]), NOW)
    spot = quote_from_ticker(exchange.parse_ticker(tickers["spot"]["result"]["list"][0]), NOW)

    assert (inverse.symbol, inverse.bid, inverse.ask) == ("BTC/USD:BTC", Decimal("16596.00"),
                                                          Decimal("16597.50"))
    assert (inverse.mark, inverse.index) == (Decimal("16596.00"), Decimal("16598.54"))
    assert inverse.funding_rate == Decimal("-0.001034")
    assert inverse.next_funding_ts == datetime(2022, 12, 30, 8, tzinfo=UTC)  # Bybit's nextFundingTime
    assert (spot.symbol, spot.mark, spot.ts) == ("BTC/USDT", Decimal("20533.13"), NOW)
    assert spot.next_funding_ts is None


@pytest.mark.parametrize("corrupt", [
    {"bid": float("nan")},
    {"ask": float("inf")},
    {"bid": 0},
    {"bid": 101, "ask": 100},  # crossed
    {"markPrice": -1},
    {"timestamp": 10**20},  # beyond any date
    {"timestamp": 10**14},  # the year 5138
    {"timestamp": 0},  # 1970
])
def test_a_corrupted_ticker_is_malformed(corrupt: dict[str, Any]) -> None:
    ticker = {"symbol": "BTC/USDT:USDT", "bid": 100, "ask": 100.5, "markPrice": 100.2,
              "timestamp": int(NOW.timestamp() * 1000)} | corrupt

    with pytest.raises(MalformedPayload):
        quote_from_ticker(ticker, NOW)


def ticker_ahead(secs: float) -> dict[str, Any]:
    return {"symbol": "BTC/USDT:USDT", "bid": 100, "ask": 100.5,
            "timestamp": int((NOW + timedelta(seconds=secs)).timestamp() * 1000)}


@pytest.mark.parametrize("ahead_secs", [QUOTE_MAX_LEAD_SECS + 1, 3600, 365 * 86_400])
def test_a_ticker_stamped_beyond_the_lead_ahead_of_the_clock_is_malformed(ahead_secs: float) -> None:
    with pytest.raises(MalformedPayload):
        quote_from_ticker(ticker_ahead(ahead_secs), NOW)


def test_a_ticker_stamped_within_the_lead_ahead_of_the_clock_is_a_quote() -> None:
    assert quote_from_ticker(ticker_ahead(5), NOW).ts == NOW + timedelta(seconds=5)
    assert quote_from_ticker(ticker_ahead(QUOTE_MAX_LEAD_SECS), NOW).ts > NOW


def test_the_lead_a_ticker_may_have_is_wall_seconds_times_the_clocks_speed() -> None:
    ahead_secs = QUOTE_MAX_LEAD_SECS * 600  # simulated seconds of a clock at 600x

    assert quote_from_ticker(ticker_ahead(ahead_secs), NOW, speed=600).ts > NOW
    with pytest.raises(MalformedPayload):
        quote_from_ticker(ticker_ahead(ahead_secs + 1), NOW, speed=600)


async def test_a_future_stamped_tick_does_not_stop_later_quotes_from_updating_the_risk_model() -> None:
    """The tickers as the quote stream reads them (a malformed one skipped) into the cycle: the risk
    model's bar slots go on after a tick stamped a year ahead."""
    bot = Bot()
    track = bot.service.cycle.risk.tracks["SOL"] = RiskTrack(proxy=False)
    slots = []
    for offset_secs in (0, 60, 120, 365 * 86_400, 180, 240):  # a quote a minute: a bar a minute
        bot.clock.t = T0 + timedelta(seconds=min(offset_secs, 600))
        ticker = {"symbol": SOL, "bid": "99.99", "ask": "100.01", "markPrice": "100",
                  "timestamp": int((T0 + timedelta(seconds=offset_secs)).timestamp() * 1000)}
        try:
            bot.service.ingest.on_quote(quote_from_ticker(ticker, bot.clock.now(), bot.clock.speed))
        except MalformedPayload:
            continue
        bot.service.cycle.risk.observe("SOL", SOL)
        slots.append(track.slot)

    assert slots[0] is None  # the first quote starts the bar, the second (a minute on) sets it
    assert [slot - slots[1] for slot in slots[1:]] == [0, 1, 2, 3]  # one bar per minute, on and on


def test_ticker_without_a_book_is_malformed() -> None:
    with pytest.raises(MalformedPayload):
        quote_from_ticker({"symbol": "BTC/USDT", "bid": None, "ask": 1}, NOW)


def bybit_error(body: dict[str, Any]) -> Exception:
    exchange = ccxt.bybit()
    text = json.dumps(body, separators=(",", ":"))
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.handle_errors(200, "OK", "https://api.bybit.com/v5/order/create", "POST", {}, text, body,
                               {}, "")
    return caught.value


def test_bybit_rate_limit_answer_is_rate_limited() -> None:
    error = bybit_error({"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {},
                         "time": 1})

    assert isinstance(error_from_ccxt(error, placing=True), RateLimited)


def test_bybit_insufficient_balance_is_a_definite_rejection() -> None:
    error = bybit_error({"retCode": 110007, "retMsg": "ab not enough for new order", "result": {},
                         "retExtInfo": {}, "time": 1668838414793})

    assert isinstance(error_from_ccxt(error, placing=True), OrderRejected)


def test_bybit_repeated_order_link_id_is_an_unknown_outcome_when_placing() -> None:
    error = bybit_error({"retCode": 110072, "retMsg": "OrderLinkedID is duplicate", "result": {},
                         "retExtInfo": {}, "time": 1})

    assert isinstance(error, ccxt.InvalidOrder)
    assert isinstance(error_from_ccxt(error, placing=True), OrderOutcomeUnknown)


def test_bybit_system_error_while_placing_is_an_unknown_outcome() -> None:
    error = bybit_error({"retCode": 10016, "retMsg": "System error. Please try again later.",
                         "result": {}, "retExtInfo": {}, "time": 1})

    assert isinstance(error_from_ccxt(error, placing=True), OrderOutcomeUnknown)
    assert isinstance(error_from_ccxt(error), ExchangeUnavailable)


@pytest.mark.parametrize(("exc", "placing", "expected"), [
    (ccxt.DDoSProtection("403"), False, RateLimited),
    (ccxt.RequestTimeout("timeout"), True, OrderOutcomeUnknown),
    (ccxt.RequestTimeout("timeout"), False, ExchangeUnavailable),
    (ccxt.ExchangeNotAvailable("502"), True, OrderOutcomeUnknown),
    (ccxt.NetworkError("reset"), False, ExchangeUnavailable),
    (ConnectionResetError("reset"), True, OrderOutcomeUnknown),
    (ccxt.OrderNotFound("gone"), False, OrderRejected),
    (ccxt.BadRequest("bad"), True, OrderRejected),
    (ccxt.AuthenticationError("bad key"), False, ConfigError),
    (ccxt.PermissionDenied("no trade"), True, ConfigError),
])
def test_ccxt_errors_map_onto_what_the_loop_does_next(exc: Exception, placing: bool, expected: type) -> None:
    assert isinstance(error_from_ccxt(exc, placing=placing), expected)


def test_refused_signature_does_not_echo_the_signed_string() -> None:
    error = bybit_error({"retCode": 10004,
                         "retMsg": "error sign! origin_string[1672280218882opjSlSOzqIeXROT5rq5000]",
                         "result": {}, "retExtInfo": {}, "time": 1})

    refusal = error_from_ccxt(error)

    assert isinstance(refusal, ConfigError)
    assert "opjSlSOzqIeXROT5rq" not in str(refusal)


def test_bybit_key_withdraw_permission_is_read_from_the_wallet_permissions() -> None:
    answer = recorded("bybit_query_api.json")
    withdrawing = copy.deepcopy(answer)
    withdrawing["result"]["permissions"]["Wallet"].append("Withdraw")

    assert bybit_key_can_withdraw(answer) is False
    assert bybit_key_can_withdraw(withdrawing) is True


def portfolio_doc() -> dict[str, Any]:
    return {
        "exchange": "deribit",
        "markets": {"BTC/USD:BTC": {"type": "swap", "swap": True, "linear": False, "inverse": True,
                                    "base": "BTC", "quote": "USD", "settle": "BTC", "contractSize": 10}},
        "positions": [{"symbol": "BTC/USD:BTC", "contracts": 50000, "side": "short", "markPrice": "60000",
                       "entryPrice": "50000", "info": {}}],
        "balances": {"BTC": "1", "USDT": "100"},
        "prices": {"BTC": "60000"},
        "external": {"ETH": "2"},
    }


def test_portfolio_file_of_a_coin_margined_hedge_is_neutral() -> None:
    doc = portfolio_doc()
    doc["prices"]["ETH"] = "3000"

    portfolio = portfolio_from_json(doc)
    deltas = asset_deltas(*portfolio)

    assert portfolio.positions[0].contracts == -50000
    assert abs(deltas["BTC"].delta_coin) < Decimal("1e-18")
    assert deltas["ETH"].delta_usd == 6000
    assert "USDT" not in deltas


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d.pop("markets"), "markets"),
    (lambda d: d["balances"].update(BTC="one"), "balances.BTC"),
    (lambda d: d["positions"][0].update(symbol="ETH/USD:ETH"), "positions[0].symbol"),
    (lambda d: d["positions"][0].pop("markPrice"), "positions[0].markPrice"),
    (lambda d: d["markets"]["BTC/USD:BTC"].update(type="perp"), "markets.BTC/USD:BTC.type"),
    (lambda d: d.update(exchange="notanexchange"), "exchange"),
    (lambda d: None, "prices.ETH"),
])
def test_malformed_portfolio_file_names_what_is_wrong(change: Any, named: str) -> None:
    doc = portfolio_doc()
    change(doc)

    with pytest.raises(ConfigError) as caught:
        portfolio_from_json(doc)

    assert caught.value.variable == named


LINEAR_BTC = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT")
GOOD_ORDER = {"id": "1", "clientOrderId": "dk1a0", "symbol": "BTC/USDT:USDT", "status": "open", "amount": 1,
              "filled": 0, "type": "limit", "side": "buy", "price": 100, "timestamp": 1704067200000}
GOOD_TRADE = {"id": "t1", "order": "1", "side": "buy", "amount": 1, "price": 100,
              "fee": {"cost": 0.1, "currency": "USDT"}, "timestamp": 1704067200000,
              "info": {"execType": "Trade"}}


@pytest.mark.parametrize(("parse", "malformed"), [
    (lambda d: order_from_ccxt(d, NOW), GOOD_ORDER | {"status": ["open"]}),  # unhashable: TypeError
    (lambda d: order_from_ccxt(d, NOW), GOOD_ORDER | {"status": {"s": "open"}}),
    (lambda d: fill_from_trade(d, LINEAR_BTC, "bybit"), GOOD_TRADE | {"fee": "0.1"}),  # AttributeError
    (lambda d: fill_from_trade(d, LINEAR_BTC, "bybit"), GOOD_TRADE | {"info": {"execType": ["Trade"]}}),
    (lambda d: is_liquidation_trade(d, "bybit"), GOOD_TRADE | {"info": {"execType": ["Trade"]}}),
    (lambda d: balances_from_ccxt(d, "bybit"), {"info": {"result": ["USDT"]}}),  # AttributeError
    (lambda d: balances_from_ccxt(d, "bybit"), {"info": {"result": "USDT"}}),
])
def test_a_ccxt_dict_of_the_wrong_shape_is_a_malformed_payload_not_a_crash(
        parse: Any, malformed: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        parse(malformed)
