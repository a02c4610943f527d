"""The backtest's inputs: naming assets from files, exposure specifications, instruments, events."""

from decimal import Decimal as D
from pathlib import Path

import pytest

from deltakeeper.backtest.data import (
    asset_from_filename,
    linear_perp,
    load_funding,
    load_inventory,
    load_price_series,
    parse_exposure,
    parse_file_specs,
)
from deltakeeper.backtest.files import DataFile
from deltakeeper.domain.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "asset"),
    [
        ("BTCUSDT_5m.csv", "BTC"),
        ("ETHUSDT.parquet", "ETH"),
        ("ETH-USDT_binance_2020-01-01_funding_history.csv", "ETH"),
        ("solusdc-1h.csv", "SOL"),
        ("BTCPERP.csv", "BTC"),
        ("DOGE.csv", "DOGE"),
        ("USDT.csv", None),
        ("5m_BTC.csv", None),
    ],
)
def test_asset_is_the_file_names_leading_letters_without_a_quote_suffix(name, asset):
    assert asset_from_filename(name) == asset


def test_file_specs_take_asset_equals_file_or_the_file_name(tmp_path):
    (tmp_path / "BTCUSDT_5m.csv").write_text("x")
    (tmp_path / "prices.csv").write_text("x")
    specs = [str(tmp_path / "BTCUSDT_5m.csv"), f"eth={tmp_path / 'prices.csv'}"]
    assert parse_file_specs(specs, "--prices") == {
        "BTC": DataFile(tmp_path / "BTCUSDT_5m.csv"), "ETH": DataFile(tmp_path / "prices.csv")
    }


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["BTC=/nonexistent.csv"], "a readable file"),
        (["/tmp/5m.csv"], "ASSET=FILE"),
        (["USDT=/etc/hostname"], "not a stablecoin"),
    ],
)
def test_bad_file_specs_name_the_flag(specs, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        parse_file_specs(specs, "--prices")
    assert error.value.variable == "--prices"


def test_an_asset_named_twice_is_refused(tmp_path):
    (tmp_path / "BTCUSDT.csv").write_text("x")
    with pytest.raises(ConfigError, match="one file per asset"):
        parse_file_specs([str(tmp_path / "BTCUSDT.csv"), f"BTC={tmp_path / 'BTCUSDT.csv'}"], "--funding")


def test_exposure_specs(tmp_path):
    assert parse_exposure("static").kind == "static"
    assert parse_exposure("lp").value_usd == D(1_000_000)
    assert parse_exposure("lp:250_000").value_usd == D(250_000)
    assert parse_exposure("LP:1e6").value_usd == D(1_000_000)
    inventory = tmp_path / "inv.csv"
    inventory.write_text("timestamp,asset,quantity\n")
    assert parse_exposure(f"inventory={inventory}").path == inventory
    for bad in ("pool", "lp:-5", "lp:abc", "static:0", f"inventory={tmp_path / 'missing.csv'}"):
        with pytest.raises(ConfigError) as error:
            parse_exposure(bad)
        assert error.value.variable == "--exposure"


def test_hedge_is_the_sims_linear_perp_or_one_made_with_bybit_fees():
    btc = linear_perp("BTC")
    assert btc.symbol == "BTC/USDT:USDT" and btc.lot_step_contracts == D("0.001")
    made = linear_perp("PEPE")
    assert (made.symbol, made.contract_size, made.lot_step_contracts) == ("PEPE/USDT:USDT", D(1), D("0.001"))
    assert (made.taker_fee_rate, made.maker_fee_rate) == (D("0.00055"), D("0.0002"))
    assert made.funding_interval_secs is None and btc.funding_interval_secs is None


def test_price_events_are_at_the_bar_close_with_a_quote_around_it(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open,high,low,close\n"
                    "2025-04-03 17:05:00+00:00,1,1,1,81804.9\n"
                    "2025-04-03 17:00:00+00:00,1,1,1,81794.8\n")
    series = load_price_series("BTC", path, spread_bps=2.0)
    assert series.bar_secs == 300
    first = series.events[0]
    assert first.ts.isoformat() == "2025-04-03T17:05:00+00:00"
    # 81794.8 x (1 -+ 1 bp) = 81786.62 and 81802.98, rounded outwards to the 0.1 tick
    assert (first.quote.bid, first.quote.ask) == (D("81786.6"), D("81803.0"))
    assert first.quote.mark == D("81794.80")
    assert first.price == 81794.8


def test_bad_price_files_are_config_errors(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open,high,low\n1,1,1,1\n")
    with pytest.raises(ConfigError) as error:
        load_price_series("BTC", path, 1.0)
    assert error.value.variable == "--prices"
    path.write_text("timestamp,open,high,low,close\n1700000000000,1,1,1,0\n")
    with pytest.raises(ConfigError, match="positive closing prices"):
        load_price_series("BTC", path, 1.0)


def test_funding_columns_are_found_by_name_and_times_floored_to_the_second(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("Symbol,Date,Funding Rate\n"
                    "BTC,2024-01-01 00:00:00.004,0.0001\nBTC,1704067200000,0.0002\n")
    assert load_funding(path) == ((1704067200.0, D("0.0002")),)
    bad = tmp_path / "g.csv"
    bad.write_text("when,rate\n1,0.1\n")
    with pytest.raises(ConfigError, match="timestamp"):
        load_funding(bad)


def test_inventory_rows_become_paths_per_asset(tmp_path):
    path = tmp_path / "inv.csv"
    path.write_text("timestamp,asset,quantity\n1700000060000,btc,2\n1700000000000,BTC,1\n1700000000000,ETH,5\n")
    paths = load_inventory(Path(path))
    assert paths["BTC"].holdings_coin(1.0, 1700000030.0) == 1
    assert paths["BTC"].holdings_coin(1.0, 1700000060.0) == 2
    assert paths["ETH"].holdings_coin(1.0, 1800000000.0) == 5


def test_backtest_settings_come_from_the_live_bots_dk_variables(monkeypatch):
    from deltakeeper.backtest import BacktestSettings
    from deltakeeper.config import load_settings
    from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo

    for name, value in {"DK_REBALANCE_TO": "edge", "DK_DEFAULT_BAND_PCT": "2", "DK_EXTERNAL__BTC": "3",
                        "DK_ASSETS__ETH__BAND_USD": "500", "DK_ASSETS__ETH__TARGET": "1.5",
                        "DK_MAX_ORDER_USD": "1000"}.items():
        monkeypatch.setenv(name, value)
    settings = BacktestSettings.from_settings(load_settings())
    assert settings.rebalance_to is RebalanceTo.EDGE
    assert settings.band_for("BTC") == Band(BandUnit.PCT, D(2))
    assert settings.band_for("ETH") == Band(BandUnit.USD, D(500))
    assert settings.targets_coin == {"ETH": D("1.5")}
    assert settings.external_coin == {"BTC": D(3)}
    assert settings.limits.max_order_usd == D(1000)


def test_backtest_settings_take_the_cost_aware_variables_once_the_settings_have_them():
    from types import SimpleNamespace

    from deltakeeper.backtest import BacktestSettings

    live = SimpleNamespace(risk_aversion=1e-3, max_deviation_pct=D(5), timer_secs=600.0,
                           skip_horizon_secs=86400.0, slippage_bps=D("0.5"), policy="cost-aware")
    settings = BacktestSettings.from_settings(live)
    assert settings.risk_aversion_per_usd == 1e-3
    assert (settings.max_deviation_pct, settings.timer_secs) == (D(5), 600.0)
    assert (settings.skip_horizon_secs, settings.slippage_bps) == (86400.0, D("0.5"))


def test_flags_override_the_settings_and_bad_values_name_the_flag():
    from deltakeeper.backtest import BacktestSettings
    from deltakeeper.cli.backtest import apply_overrides

    settings = apply_overrides(BacktestSettings(), timer="4h", band_pct="2.5", risk_aversion="1e-5",
                               rebalance_to="edge", skip_horizon="1d")
    assert (settings.timer_secs, settings.default_band.half_width) == (14400.0, D("2.5"))
    assert (settings.risk_aversion_per_usd, settings.skip_horizon_secs) == (1e-5, 86400.0)
    bad = (("timer", "soon"), ("band_pct", "0"), ("risk_aversion", "-1"), ("rebalance_to", "mid"),
           ("max_deviation_pct", "101"), ("spread_bps", "x"))
    for flag, value in bad:
        with pytest.raises(ConfigError) as error:
            apply_overrides(BacktestSettings(), **{flag: value})
        assert error.value.variable == "--" + flag.replace("_", "-")
