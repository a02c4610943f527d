"""The margin report of a portfolio file (REFERENCE 3): portfolio margin against standard cross margin, the
capital freed, and each leg's distance to liquidation beside the exchange's own figures."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from deltakeeper.cli.margin import margin_report
from deltakeeper.cli.output import plain
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.margin import MarginRules, account_margin
from deltakeeper.domain.margin_legs import implied_vol, liquidation_move
from deltakeeper.domain.margin_tiers import DEFAULT_TIERS_USD, MarginTier, liquidation_price_usd

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
DAY_MS = 86_400_000
TS = 1_704_096_000_000  # 2024-01-01T08:00:00Z

LINEAR_PERP = {"type": "swap", "base": "BTC", "quote": "USDT", "settle": "USDT", "linear": True,
               "contractSize": 1}
INVERSE_PERP = {"type": "swap", "base": "BTC", "quote": "USD", "settle": "BTC", "inverse": True,
                "contractSize": 1}


def hedged_book(**position: Any) -> dict[str, Any]:
    """REFERENCE 3.2: 100 BTC spot and 100 BTC short linear perp at 60,000, 20% of it (1.2M USDT) posted."""
    return {
        "markets": {"BTC/USDT:USDT": LINEAR_PERP},
        "positions": [{"symbol": "BTC/USDT:USDT", "contracts": 100, "side": "short", "markPrice": 60_000,
                       "entryPrice": 60_000, "leverage": 5, "marginMode": "isolated", "info": {},
                       **position}],
        "balances": {"BTC": 100, "USDT": 1_200_000},
        "prices": {"BTC": 60_000},
    }


def test_spot_and_short_perp_need_one_percent_under_portfolio_margin_against_twenty_at_5x() -> None:
    report = margin_report(hedged_book())

    pm, standard = report["portfolio_margin"]["USDT"], report["standard_margin"]["USDT"]
    # Spot and perp cancel in every cell: only the perp's roll shock, 1% of 100 BTC, remains.
    assert pm["initial"] == D(60_000)
    assert pm["maintenance"] == D(48_000)
    assert standard["initial"] == D(1_200_000)  # 6M notional at 5x
    assert standard["maintenance"] == D(133_700)  # REFERENCE 3.1 tiers: 6M x 2.5% - 16,300
    assert report["capital_freed"]["USDT"] == D(1_140_000)
    assert report["portfolio_margin_groups"][0]["move_to_margin_call"] == {"up": None, "down": None}


def test_5x_isolated_short_leg_is_liquidated_by_a_rally_of_about_17_percent() -> None:
    leg = margin_report(hedged_book())["positions"][0]

    exact = liquidation_price_usd(D(-100), D(60_000), D(1_200_000), list(DEFAULT_TIERS_USD))
    assert exact is not None
    assert leg["liquidation_move"] == pytest.approx(0.17, abs=0.005)
    assert leg["liquidation_move"] == pytest.approx(float(exact / 60_000 - 1), abs=1e-9)
    assert abs(leg["liquidation_price"] - exact) < D("0.0001")
    assert leg["liquidation_source"] == "estimate"
    assert leg["estimate"]["collateral_basis"] == "isolated at 5x"


def test_without_spot_in_the_grid_the_short_perp_carries_the_whole_rally() -> None:
    doc = {**hedged_book(), "portfolio_margin": {"include_spot": False}}

    pm = margin_report(doc)["portfolio_margin"]["USDT"]

    assert pm["initial"] / D(6_000_000) == pytest.approx(D("0.17"))  # 16% move + 1% roll


def test_cross_margin_leg_is_backed_by_the_whole_settlement_wallet() -> None:
    cross = hedged_book(marginMode="cross")
    cross["balances"]["USDT"] = 3_000_000

    leg = margin_report(cross)["positions"][0]

    exact = liquidation_price_usd(D(-100), D(60_000), D(3_000_000), list(DEFAULT_TIERS_USD))
    assert exact is not None
    assert leg["estimate"]["collateral"] == D(3_000_000)
    assert leg["liquidation_move"] == pytest.approx(float(exact / 60_000 - 1), abs=1e-9)


@pytest.mark.parametrize("contracts", [-100, 100])
def test_the_report_and_the_loop_estimate_one_liquidation_price(contracts: int) -> None:
    side = "long" if contracts > 0 else "short"
    cross = hedged_book(marginMode="cross", contracts=abs(contracts), side=side, entryPrice=58_000)
    cross["balances"]["USDT"] = 2_000_000
    perp = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", contract_size=D(1),
                      lot_step_contracts=D(1))
    position = Position(perp.symbol, D(contracts), D(58_000), D(60_000))

    leg = margin_report(cross)["positions"][0]
    margin = account_margin({perp.symbol: perp}, {"USDT": D(2_000_000)}, [position], {}, MarginRules())
    loop = margin.leg(perp.symbol)

    assert loop is not None and loop.liquidation_price is not None and loop.liquidation_move is not None
    assert leg["liquidation_price"] == D(f"{loop.liquidation_price:.10g}")
    assert leg["liquidation_move"] == loop.liquidation_move


def test_an_isolated_legs_exchange_collateral_backs_it() -> None:
    leg = margin_report(hedged_book(collateral=1_500_000))["positions"][0]

    exact = liquidation_price_usd(D(-100), D(60_000), D(1_500_000), list(DEFAULT_TIERS_USD))
    assert exact is not None
    assert (leg["estimate"]["collateral"], leg["estimate"]["collateral_basis"]) == (D(1_500_000), "exchange")
    assert leg["liquidation_move"] == pytest.approx(float(exact / 60_000 - 1), abs=1e-9)


def test_a_cross_legs_exchange_collateral_is_shown_but_the_wallet_backs_it() -> None:
    # ccxt's Bybit collateral is the position's own margin plus its PnL, while the whole wallet backs it.
    cross = hedged_book(marginMode="cross", collateral=120_000)
    cross["balances"]["USDT"] = 3_000_000

    leg = margin_report(cross)["positions"][0]

    assert leg["exchange"]["collateral"] == D(120_000)
    assert leg["estimate"]["collateral"] == D(3_000_000)
    assert leg["estimate"]["collateral_basis"].startswith("cross")


def test_file_tiers_in_ccxt_shape_set_the_maintenance_margin() -> None:
    doc = hedged_book()
    doc["leverage_tiers"] = {"BTC/USDT:USDT": [
        {"minNotional": 0, "maxNotional": 1_000_000, "maintenanceMarginRate": 0.01},
        {"minNotional": 1_000_000, "maxNotional": None, "maintenanceMarginRate": 0.02},
    ]}

    report = margin_report(doc)

    # 6M x 2% - 1M x (2% - 1%) = 110,000; no note about the default table.
    assert report["standard_margin"]["USDT"]["maintenance"] == D(110_000)
    assert not any("default tier table" in note for note in report["notes"])


def test_coin_margined_short_hedge_is_never_liquidated_nor_called() -> None:
    # REFERENCE 1.2: 1 BTC collateral, short 50,000 USD inverse opened at 50,000, now at 60,000.
    doc = {
        "markets": {"BTC/USD:BTC": INVERSE_PERP},
        "positions": [{"symbol": "BTC/USD:BTC", "contracts": 50_000, "side": "short", "markPrice": 60_000,
                       "entryPrice": 50_000, "info": {}}],
        "balances": {"BTC": 1},
        "prices": {"BTC": 60_000},
    }

    report = margin_report(doc)

    assert abs(report["equity"]["standard_margin"]["BTC"] - D("0.833333333333")) < D("1e-12")
    assert report["positions"][0]["liquidation_move"] is None
    assert report["portfolio_margin_groups"][0]["move_to_margin_call"] == {"up": None, "down": None}
    # Margin of a coin-settled grid is in the coin.
    assert set(report["portfolio_margin"]) == set(report["standard_margin"]) == {"BTC"}


def test_portfolio_file_reproduces_deribits_simulate_oracle() -> None:
    # REFERENCE 3.2: BTC-PERPETUAL +0.314538364 BTC, BTC-28JUN24 -0.001187534 BTC (11 days), index
    # 65,666.19. Sizes are USD face at a mark equal to the index; add-ons the file cannot know are zero.
    index = D("65666.19")
    doc = {
        "timestamp": TS,
        "markets": {
            "BTC/USD:BTC": INVERSE_PERP,
            "BTC/USD:BTC-240628": {**INVERSE_PERP, "type": "future", "expiry": TS + 11 * DAY_MS},
        },
        "positions": [
            {"symbol": "BTC/USD:BTC", "contracts": str(D("0.314538364") * index), "side": "long",
             "markPrice": str(index), "entryPrice": str(index), "info": {}},
            {"symbol": "BTC/USD:BTC-240628", "contracts": str(D("0.001187534") * index), "side": "short",
             "markPrice": str(index), "entryPrice": str(index), "info": {}},
        ],
        "balances": {"BTC": 1},
        "prices": {"BTC": str(index)},
    }

    group = margin_report(doc)["portfolio_margin_groups"][0]

    assert float(group["worst_loss"]) == pytest.approx(0.05968587238, abs=1e-10)
    assert float(group["roll_shock"]) == pytest.approx(0.00315725898, abs=1e-10)
    assert float(group["initial"]) == pytest.approx(0.06284313098, abs=1e-8)
    assert float(group["maintenance"]) == pytest.approx(0.050274504784, abs=1e-8)


def options_book(**call: Any) -> dict[str, Any]:
    """10 BTC deposited, 10 ATM 30-day calls sold at 60% vol for 0.06853941 BTC each, hedged with
    5.34270 BTC of short inverse perp (the book of tests/unit/test_options_delta.py)."""
    return {
        "exchange": "deribit",
        "timestamp": TS,
        "markets": {
            "BTC/USD:BTC": INVERSE_PERP,
            "BTC/USD:BTC-240131-60000-C": {"type": "option", "base": "BTC", "quote": "USD", "settle": "BTC",
                                           "inverse": True, "contractSize": 1, "expiry": TS + 30 * DAY_MS,
                                           "strike": 60_000, "optionType": "call"},
        },
        "positions": [
            {"symbol": "BTC/USD:BTC", "contracts": 320_562, "side": "short", "markPrice": 60_000,
             "entryPrice": 60_000, "info": {}},
            {"symbol": "BTC/USD:BTC-240131-60000-C", "contracts": 10, "side": "short",
             "markPrice": "0.06853941", "entryPrice": "0.06853941", "info": {},
             "greeks": {"markImpliedVolatility": 60}, **call},
        ],
        "balances": {"BTC": "10.6853941"},
        "prices": {"BTC": 60_000},
    }


def test_short_calls_take_deribits_standard_option_margin_and_join_the_coin_grid() -> None:
    report = margin_report(options_book())
    call = report["positions"][1]

    # Per call: IM max(0.15 - 0 OTM, 0.10) + 0.06853941, MM 0.075 + 0.06853941.
    assert call["estimate"]["initial_margin"] == 10 * D("0.21853941")
    assert call["estimate"]["maintenance_margin"] == 10 * D("0.14353941")
    group = report["portfolio_margin_groups"][0]
    assert (group["asset"], group["settle"]) == ("BTC", "BTC")
    assert group["equity"] == D(10)  # balance + the calls' (negative) value
    assert group["worst_scenario"]["extended"] is True
    assert any("extended move +500%" in note for note in report["notes"])
    assert group["move_to_margin_call"]["up"] is not None and group["move_to_margin_call"]["up"] > 0


def test_option_without_a_mark_iv_is_revalued_at_the_vol_its_mark_implies() -> None:
    with_iv = margin_report(options_book())
    implied = margin_report(options_book(greeks={}))

    assert implied_vol(0.06853941 * 60_000, 60_000, 60_000, 30 / 365, True) == pytest.approx(0.60, abs=1e-6)
    assert float(implied["portfolio_margin"]["BTC"]["initial"]) == pytest.approx(
        float(with_iv["portfolio_margin"]["BTC"]["initial"]), rel=1e-5)


def test_deribit_position_shows_the_exchanges_figures_beside_the_estimate() -> None:
    exchange = ccxt.deribit()
    def recorded(name: str) -> Any:
        return json.loads((FIXTURES / name).read_text())

    exchange.publicGetGetInstruments = lambda params: recorded("deribit_instruments.json")
    exchange.set_markets(exchange.fetch_markets())
    raw = exchange.parse_position(recorded("deribit_positions.json")["docs_example"])
    doc = {
        "exchange": "deribit",
        "markets": {"BTC/USD:BTC": exchange.market("BTC/USD:BTC")},
        "positions": [raw],
        "balances": {"BTC": "0.00062359"},
        "prices": {"BTC": "7466.79"},
    }

    leg = plain(margin_report(doc))["positions"][0]

    # Deribit's docs example: long 50 USD, estimated liquidation at 1.74, IM 0.000197283 BTC at 34x.
    assert leg["liquidation_source"] == "exchange"
    assert leg["liquidation_price"] == "1.74"
    assert leg["exchange"]["initial_margin"] == "0.000197283"
    assert leg["exchange"]["maintenance_margin"] == "0.000143783"
    assert leg["exchange"]["leverage"] == "34"
    assert leg["estimate"]["leverage"] == "34"
    assert leg["estimate"]["liquidation_price"] is not None
    assert set(leg["disagreements"]) <= {"liquidation_price", "initial_margin", "maintenance_margin"}
    assert "liquidation_price" in leg["disagreements"]  # our default tiers are not Deribit's


def test_report_is_plain_json_with_decimal_strings() -> None:
    text = json.dumps(plain(margin_report(hedged_book())))
    data = json.loads(text)

    assert data["portfolio_margin"] == {"USDT": {"initial": "60000", "maintenance": "48000"}}
    assert data["standard_margin"] == {"USDT": {"initial": "1200000", "maintenance": "133700"}}
    assert data["positions"][0]["symbol"] == "BTC/USDT:USDT"
    assert isinstance(data["positions"][0]["liquidation_move"], float)


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d.update(leverage_tiers={"BTC/USDT:USDT": [{"floor": 0, "cap": 10, "mmr": 0.01},
                                                         {"floor": 20, "cap": 30, "mmr": 0.02}]}),
     "leverage_tiers.BTC/USDT:USDT"),
    (lambda d: d.update(leverage_tiers={"ETH/USDT:USDT": [{"floor": 0, "mmr": 0.01}]}),
     "leverage_tiers.ETH/USDT:USDT"),
    (lambda d: d.update(leverage_tiers={"BTC/USDT:USDT": [{"floor": 0, "mmr": 2}]}),
     "leverage_tiers.BTC/USDT:USDT[0]"),
    (lambda d: d.update(portfolio_margin={"params": {"BTC": {"price_rnage": 0.2}}}),
     "portfolio_margin.params.BTC.price_rnage"),
    (lambda d: d.update(portfolio_margin={"include_spot": "yes"}), "portfolio_margin.include_spot"),
    (lambda d: d.update(timestamp="soon"), "timestamp"),
    (lambda d: d["positions"][0].update(marginMode="portfolio"), "positions[0].marginMode"),
    (lambda d: d["positions"][0].update(leverage="high"), "positions[0].leverage"),
    (lambda d: d.pop("prices"), "prices"),
])
def test_bad_input_is_a_config_error_naming_what_is_wrong(change: Any, named: str) -> None:
    doc = copy.deepcopy(hedged_book())
    change(doc)

    with pytest.raises(ConfigError) as caught:
        margin_report(doc)

    assert caught.value.variable == named


def test_options_without_the_portfolios_time_are_refused_by_name() -> None:
    doc = options_book()
    del doc["timestamp"]

    with pytest.raises(ConfigError) as caught:
        margin_report(doc)

    assert caught.value.variable == "timestamp"
    assert "BTC/USD:BTC-240131-60000-C" in str(caught.value)


def test_portfolio_margin_parameters_are_settings_per_asset() -> None:
    settings = {"include_spot": False, "params": {"BTC": {"price_range": 0.2}}}
    doc = {**hedged_book(), "portfolio_margin": settings}

    pm = margin_report(doc)["portfolio_margin"]["USDT"]

    assert pm["initial"] / D(6_000_000) == pytest.approx(D("0.21"))


def test_liquidation_move_is_nearest_breach_within_the_range_or_none() -> None:
    assert liquidation_move(lambda m: 1.0) is None
    assert liquidation_move(lambda m: -1.0) == 0.0
    assert liquidation_move(lambda m: 0.3 - m) == pytest.approx(0.3, abs=1e-9)
    assert liquidation_move(lambda m: m + 0.25) == pytest.approx(-0.25, abs=1e-9)
    assert liquidation_move(lambda m: min(0.5 - m, m + 0.2)) == pytest.approx(-0.2, abs=1e-9)
    assert liquidation_move(lambda m: 11 - m) is None  # beyond +1000%


def test_default_tier_table_is_reference_3_1() -> None:
    assert DEFAULT_TIERS_USD[3] == MarginTier(D(1_000_000), D(10_000_000), D("0.025"))
