"""Options in the portfolio delta (REFERENCE 1.3, DESIGN.md 4): the exchange's delta or Black-76 from the
mark IV, price-adjusted for coin-settled options, and ccxt option markets and positions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from deltakeeper.adapters.ccxt_account import position_from_ccxt
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.adapters.ccxt_parse import MalformedPayload
from deltakeeper.adapters.portfolio_file import portfolio_from_json
from deltakeeper.domain.exposure import (
    OptionInputMissing,
    Position,
    asset_deltas,
    option_delta,
    years_to_expiry,
)
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import Instrument, Kind

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
AS_OF = datetime(2024, 1, 1, 8, tzinfo=UTC)
PRICE = D(60_000)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def deribit_option(strike: int = 60_000, right: str = "call", days: float = 30) -> Instrument:
    return Instrument(
        f"BTC/USD:BTC-{strike}-{right[0].upper()}", Kind.OPTION, "BTC", "USD", "BTC",
        contract_size=D(1), expiry=AS_OF + timedelta(days=days), strike=D(strike), option_type=right,
    )


ATM_CALL = deribit_option()
INVERSE_PERP = Instrument("BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True,
                          contract_size=D(1))
REFERENCE_PREMIUM_COIN = D("0.06853941")


def test_black76_delta_of_the_reference_call_is_price_adjusted_by_its_coin_premium() -> None:
    # REFERENCE 1.3: F = K = 60,000, T = 30/365, s = 0.60 -> delta_BS 0.534270, adjusted 0.465730.
    unpriced = Position(ATM_CALL.symbol, D(1), D(0), D(0), mark_iv=0.60)
    marked = Position(ATM_CALL.symbol, D(1), D(0), REFERENCE_PREMIUM_COIN, mark_iv=0.60)

    model = option_delta(ATM_CALL, unpriced, PRICE, AS_OF)
    at_mark = option_delta(ATM_CALL, marked, PRICE, AS_OF)

    assert years_to_expiry(ATM_CALL.expiry, AS_OF) == pytest.approx(30 / 365)  # type: ignore[arg-type]
    assert model.source == "black76"
    assert float(model.delta) == pytest.approx(0.534270, abs=5e-7)
    assert float(model.value) == pytest.approx(0.06853941, abs=5e-9)
    assert float(model.delta_adj) == pytest.approx(0.465730, abs=5e-7)
    assert float(at_mark.delta_adj) == pytest.approx(0.465730, abs=5e-7)
    assert at_mark.value == REFERENCE_PREMIUM_COIN


def test_coin_settled_call_adds_its_value_and_adjusted_delta_which_sum_to_the_plain_delta() -> None:
    position = Position(ATM_CALL.symbol, D(3), D("0.05"), REFERENCE_PREMIUM_COIN, mark_iv=0.60)

    deltas = asset_deltas({ATM_CALL.symbol: ATM_CALL}, {}, [position], {"BTC": PRICE}, as_of=AS_OF)

    # 3 x (0.06853941 value + 0.465730 adjusted) = 3 x 0.534270; the unrealised PnL is not added.
    assert float(deltas["BTC"].delta_coin) == pytest.approx(3 * 0.534270, abs=2e-6)
    assert float(deltas["BTC"].gross_coin) == pytest.approx(3 * 0.534270, abs=2e-6)


def test_deribit_faq_call_with_delta_half_bought_for_a_tenth_raises_delta_by_four_tenths() -> None:
    # Deribit FAQ (REFERENCE 1.3): the premium leaves the wallet, the option's value and its adjusted
    # delta 0.50 - 0.10 arrive. The account's delta rises by 0.40, not by 0.50 and not by 0.30.
    call = Position(ATM_CALL.symbol, D(1), D("0.10"), D("0.10"), delta=D("0.50"))
    instruments = {ATM_CALL.symbol: ATM_CALL}
    prices = {"BTC": PRICE}

    before = asset_deltas(instruments, {"BTC": D(1)}, [], prices)["BTC"].delta_coin
    after = asset_deltas(instruments, {"BTC": D("0.9")}, [call], prices)["BTC"].delta_coin
    one = option_delta(ATM_CALL, call, PRICE, None)

    assert (one.source, one.delta_adj) == ("exchange", D("0.40"))
    assert after - before == D("0.40")


def test_short_calls_hedged_with_an_inverse_perp_are_neutral_and_short_gamma() -> None:
    # 10 BTC deposited, 10 ATM calls sold for 0.06853941 BTC each: the wallet holds 10.6853941 BTC, the
    # calls are worth -0.6853941 and add -4.65730 of adjusted delta: the account is long 5.34270 BTC,
    # hedged by selling 5.34270 BTC of inverse perp (face 320,562 USD).
    hedge_coin = D(10) - D(10) * D("0.465730")
    calls = Position(ATM_CALL.symbol, D(-10), REFERENCE_PREMIUM_COIN, REFERENCE_PREMIUM_COIN, mark_iv=0.60)
    perp = Position(INVERSE_PERP.symbol, -hedge_coin * PRICE, PRICE, PRICE)
    instruments = {i.symbol: i for i in (ATM_CALL, INVERSE_PERP)}
    wallet = {"BTC": D(10) + 10 * REFERENCE_PREMIUM_COIN}

    book = asset_deltas(instruments, wallet, [calls, perp], {"BTC": PRICE}, as_of=AS_OF)["BTC"]

    # Deribit's view of the same book: equity (balance + options value) 10 + DeltaTotal (adjusted option
    # delta + futures in coin) -4.65730 - 5.34270 = 0.
    equity = wallet["BTC"] - 10 * REFERENCE_PREMIUM_COIN
    delta_total = -10 * option_delta(ATM_CALL, calls, PRICE, AS_OF).delta_adj - hedge_coin
    assert abs(book.delta_coin) < D("1e-5")
    assert abs(equity + delta_total) < D("1e-5")

    # A 5% rally: the calls' delta grows, the perp's does not. The book is short (gamma).
    rallied = D(63_000)
    moved = [Position(ATM_CALL.symbol, D(-10), REFERENCE_PREMIUM_COIN, D(0), mark_iv=0.60),
             Position(INVERSE_PERP.symbol, -hedge_coin * PRICE, PRICE, rallied)]
    after = asset_deltas(instruments, wallet, moved, {"BTC": rallied}, as_of=AS_OF)["BTC"]
    assert after.delta_coin < D("-0.5")


def test_usd_settled_option_adds_its_plain_delta_and_no_coin() -> None:
    usdc_call = Instrument("BTC/USDC:USDC-60000-C", Kind.OPTION, "BTC", "USDC", "USDC",
                           expiry=AS_OF + timedelta(days=30), strike=PRICE, option_type="call")
    position = Position(usdc_call.symbol, D(2), D(4_000), D("4112.36"), mark_iv=0.60)

    deltas = asset_deltas({usdc_call.symbol: usdc_call}, {"USDC": D(1_000)}, [position], {"BTC": PRICE},
                          as_of=AS_OF)

    assert float(deltas["BTC"].delta_coin) == pytest.approx(2 * 0.534270, abs=2e-6)
    assert not usdc_call.coin_settled and usdc_call.is_call


def test_put_delta_is_negative_and_adjusted_further_down_by_its_premium() -> None:
    put = deribit_option(right="put")
    one = option_delta(put, Position(put.symbol, D(1), D(0), D(0), mark_iv=0.60), PRICE, AS_OF)
    model = greeks(60_000.0, 60_000.0, 30 / 365, 0.60, is_call=False)

    assert float(one.delta) == pytest.approx(model.delta, abs=1e-12)
    assert float(one.delta_adj) == pytest.approx(model.delta_adj, abs=1e-12)
    assert one.delta_adj < one.delta < 0


@pytest.mark.parametrize(("position", "as_of", "named"), [
    (Position(ATM_CALL.symbol, D(1), D(0), D("0.07")), AS_OF, "a mark IV"),
    (Position(ATM_CALL.symbol, D(1), D(0), D("0.07"), mark_iv=0.6), None, "the time (as_of)"),
])
def test_option_without_a_delta_or_what_black76_needs_is_refused_by_name(
    position: Position, as_of: datetime | None, named: str
) -> None:
    with pytest.raises(OptionInputMissing, match=named.replace("(", r"\(").replace(")", r"\)")) as caught:
        asset_deltas({ATM_CALL.symbol: ATM_CALL}, {}, [position], {"BTC": PRICE}, as_of=as_of)
    assert isinstance(caught.value, KeyError)  # the `delta` command maps it to exit 2
    assert ATM_CALL.symbol in str(caught.value)


# ccxt option markets and positions (fixtures/ccxt/README.md)


def deribit_with_option_markets() -> ccxt.deribit:
    exchange = ccxt.deribit()
    exchange.publicGetGetInstruments = lambda params: recorded("deribit_option_instruments.json")
    exchange.publicGetTicker = lambda params: recorded("deribit_option_ticker.json")
    exchange.set_markets(exchange.fetch_markets())
    return exchange


def test_deribit_option_market_is_a_coin_settled_option_counted_in_coins_not_usd_face() -> None:
    exchange = deribit_with_option_markets()
    put = instrument_from_market(exchange.market("BTC/USD:BTC-220624-52000-P"), "deribit",
                                 exchange.precisionMode)

    assert (put.kind, put.inverse, put.contract_size) == (Kind.OPTION, False, 1)
    assert (put.strike, put.option_type, put.is_call) == (52_000, "put", False)
    assert put.expiry == datetime(2022, 6, 24, 8, tzinfo=UTC)
    assert put.coin_settled and put.settle == "BTC"
    assert (put.lot_step_contracts, put.min_contracts) == (D("0.1"), D("0.1"))


def test_deribit_option_position_delta_is_the_position_delta_per_coin_with_the_tickers_iv() -> None:
    exchange = deribit_with_option_markets()
    symbol = "BTC/USD:BTC-240927-40000-C"
    instrument = instrument_from_market(exchange.market(symbol), "deribit", exchange.precisionMode)
    option_greeks = exchange.fetch_greeks(symbol)
    raw = exchange.parse_position(recorded("deribit_option_position.json"))

    position = position_from_ccxt(raw, instrument, "deribit", option_greeks)
    without_position_delta = position_from_ccxt({**raw, "info": {}}, instrument, "deribit", option_greeks)

    assert (position.symbol, position.contracts, position.mark_price) == (symbol, -2, D("0.2168"))
    assert position.delta == D("0.59621")  # -1.19242 BTC of position delta over -2 BTC of options
    assert without_position_delta.delta == D("0.59621")  # the ticker's greeks.delta
    assert position.mark_iv == pytest.approx(0.6127)  # Deribit's mark_iv is in percent
    assert position.underlying_price == D("38992.71")


def test_black76_from_deribits_mark_iv_on_its_forward_reproduces_its_delta_and_mark() -> None:
    # The recorded ticker: F 38,992.71 (the BTC-27SEP24 future), K 40,000, mark_iv 61.27%, at
    # 2023-11-10T01:09:08Z. Deribit publishes delta 0.59621 and mark 0.2168 BTC.
    exchange = deribit_with_option_markets()
    symbol = "BTC/USD:BTC-240927-40000-C"
    instrument = instrument_from_market(exchange.market(symbol), "deribit", exchange.precisionMode)
    ticker_greeks = exchange.fetch_greeks(symbol)
    as_of = datetime.fromtimestamp(ticker_greeks["timestamp"] / 1000, UTC)
    position = position_from_ccxt({**exchange.parse_position(recorded("deribit_option_position.json")),
                                   "info": {}}, instrument, "deribit", {**ticker_greeks, "delta": None})

    one = option_delta(instrument, position, D("36552.72"), as_of)

    assert one.source == "black76"
    assert float(one.delta) == pytest.approx(0.59621, abs=2e-5)
    assert one.value == D("0.2168")
    model = greeks(38_992.71, 40_000.0, years_to_expiry(instrument.expiry, as_of), 0.6127, True)  # type: ignore[arg-type]
    assert model.premium_coin == pytest.approx(0.2168, abs=5e-5)
    assert model.vega_usd / 100 == pytest.approx(141.90146, abs=5e-3)


def test_option_market_without_strike_or_right_is_malformed() -> None:
    market = {"symbol": "BTC/USD:BTC-240927-40000-C", "type": "option", "base": "BTC", "quote": "USD",
              "settle": "BTC", "expiry": 1727424000000, "strike": 40000, "optionType": "call"}
    for broken, field in (({"strike": None}, "strike"), ({"optionType": "C"}, "optionType"),
                          ({"expiry": None}, "expiry")):
        with pytest.raises(MalformedPayload) as caught:
            instrument_from_market({**market, **broken}, "deribit")
        assert caught.value.field == field


def test_portfolio_file_with_a_short_call_and_its_greeks_has_the_calls_delta() -> None:
    doc: dict[str, Any] = {
        "exchange": "deribit",
        "markets": {"BTC/USD:BTC-240927-40000-C": {
            "type": "option", "base": "BTC", "quote": "USD", "settle": "BTC", "inverse": True,
            "contractSize": 1, "expiry": 1727424000000, "strike": 40000, "optionType": "call"}},
        "positions": [{"symbol": "BTC/USD:BTC-240927-40000-C", "contracts": 2, "side": "short",
                       "markPrice": 0.2168, "entryPrice": 0.22, "info": {},
                       "greeks": {"delta": 0.59621, "markImpliedVolatility": 61.27}}],
        "balances": {"BTC": "1.44"},
        "prices": {"BTC": "36552.72"},
    }

    portfolio = portfolio_from_json(doc)
    delta = asset_deltas(*portfolio)["BTC"].delta_coin

    # 1.44 wallet (0.44 of it premium received) - 2 x 0.2168 value - 2 x (0.59621 - 0.2168)
    assert delta == D("1.44") - 2 * D("0.59621")
    assert portfolio.positions[0].mark_iv == pytest.approx(0.6127)
    with pytest.raises(Exception, match=r"positions\[0\].greeks"):
        portfolio_from_json({**doc, "positions": [{**doc["positions"][0], "greeks": [1]}]})
