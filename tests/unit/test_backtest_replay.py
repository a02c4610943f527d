"""The backtest's replay on tiny hand-made price files: tracking error, PnL, funding, the sweep grid."""

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from deltakeeper.backtest import SWEEP_GRID, BacktestSettings, load_dataset, run_backtest, run_dataset, sweep
from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo

T0 = datetime(2025, 1, 1, tzinfo=UTC)
WIDE = BacktestSettings(default_band=Band(BandUnit.PCT, D(100)), spread_bps=2.0)


def write_bars(path: Path, closes: list[float], minutes: list[int] | None = None, iso: bool = False) -> Path:
    """Bars opening at T0 + minutes (every minute by default), with these closes."""
    minutes = minutes if minutes is not None else list(range(len(closes)))
    lines = ["timestamp,open,high,low,close,volume"]
    for minute, close in zip(minutes, closes, strict=True):
        ts = T0 + timedelta(minutes=minute)
        stamp = ts.isoformat() if iso else str(int(ts.timestamp() * 1000))
        lines.append(f"{stamp},{close},{close},{close},{close},1")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rows(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def at(minute: float) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def test_tracking_error_is_time_weighted_rms_of_the_deviation_before_each_decision(tmp_path):
    # Bars open at minutes 0, 1, 3, 8 (1-minute bars): price events at minutes 1, 2, 4, 9, 60, 120 and 300
    # seconds apart. The inventory starts at 1 coin (hedged at the first event), is 2 coins at the second
    # event, 4 at the third and 1 again at the fourth; a 100% band never trades. Price 100 throughout.
    prices = write_bars(tmp_path / "XYZUSDT_1m.csv", [100.0] * 4, minutes=[0, 1, 3, 8])
    inventory = write_rows(tmp_path / "inv.csv", "timestamp,asset,quantity",
                           [f"{at(0)},XYZ,1", f"{at(2)},XYZ,2", f"{at(4)},XYZ,4", f"{at(9)},XYZ,1"])
    result = run_backtest({"XYZ": prices}, None, f"inventory={inventory}", "band", WIDE)
    # deviations 100, 300 and 0 USD, held for 60, 120 and 300 seconds
    expected = math.sqrt((60 * 100**2 + 120 * 300**2 + 300 * 0**2) / 480)
    assert result["tracking_error_usd"] == pytest.approx(expected, abs=1e-4)
    assert result["max_abs_delta_usd"] == D("300.00")
    assert result["trades"] == 0
    assert result["initial_hedge"]["trades"] == 1
    assert result["assets"]["XYZ"]["decisions"] == {"inside_band": 3}


def test_portfolio_tracking_error_nets_deviations_across_assets_but_per_asset_figures_do_not(tmp_path):
    aaa = write_bars(tmp_path / "AAA.csv", [100.0] * 3)
    bbb = write_bars(tmp_path / "BBB.csv", [100.0] * 3)
    inventory = write_rows(tmp_path / "inv.csv", "timestamp,asset,quantity",
                           [f"{at(0)},AAA,5", f"{at(0)},BBB,5", f"{at(2)},AAA,6", f"{at(2)},BBB,4"])
    result = run_backtest({"AAA": aaa, "BBB": bbb}, None, f"inventory={inventory}", "band", WIDE)
    assert result["tracking_error_usd"] == 0
    # samples at minutes 2 and 3: +100 USD of AAA and -100 USD of BBB both times
    assert result["assets"]["AAA"]["tracking_error_usd"] == pytest.approx(100)
    assert result["assets"]["BBB"]["tracking_error_usd"] == pytest.approx(100)
    assert result["assets"]["BBB"]["max_abs_delta_usd"] == D(100)
    assert result["max_abs_delta_usd"] == D(0)


def test_hedge_pnl_offsets_the_spot_pnl_of_static_holdings(tmp_path):
    prices = write_bars(tmp_path / "XYZUSDT.csv", [100.0, 110.0, 95.0, 120.0, 80.0, 105.0], iso=True)
    settings = BacktestSettings(external_coin={"XYZ": D(10)}, spread_bps=2.0)
    result = run_backtest({"XYZ": prices}, None, "static", "band", settings)
    asset = result["assets"]["XYZ"]
    assert asset["exposure_pnl_usd"] == D(50)  # 10 coins from 100 to 105
    assert asset["hedge_pnl_usd"] == D(-50)
    assert result["trades"] == 0  # static holdings hedged once: nothing moves the delta
    assert asset["final_hedge_coin"] == D(-10)
    assert result["net_pnl_usd"] == D(0)
    assert result["tracking_error_usd"] == 0
    opening = result["initial_hedge"]
    # 10 coins sold at the bid, 99.99: fee 5.5 bp of 999.90, slippage 1 bp of 1,000 against the mid
    assert opening["fees_usd"] == D("0.54994500")
    assert opening["slippage_usd"] == D("0.1")


def test_lp_hedge_tracks_the_pool_and_costs_are_fees_plus_slippage(tmp_path):
    closes = [100.0 * (1.01 if i % 2 else 0.995) ** i for i in range(40)]
    prices = write_bars(tmp_path / "XYZ.csv", closes)
    settings = BacktestSettings(timer_secs=60.0, spread_bps=2.0)
    result = run_backtest({"XYZ": prices}, None, "lp:100000", "timer", settings)
    asset = result["assets"]["XYZ"]
    assert result["trades"] > 30  # a timer of one minute trades at every 1-minute bar
    assert result["cost_usd"] == result["fees_usd"] + result["slippage_usd"]
    assert result["fees_usd"] == pytest.approx(result["traded_notional_usd"] * D("0.00055"), abs=D("0.0001"))
    # the hedge offsets the pool's moves up to its short gamma between bars
    residual = asset["hedge_pnl_usd"] + asset["exposure_pnl_usd"]
    assert abs(residual) < D("0.05") * abs(asset["exposure_pnl_usd"])
    assert abs(asset["final_holdings_coin"] + asset["final_hedge_coin"]) < D("0.01")


def test_funding_settles_at_the_data_timestamps_and_is_positive_when_received(tmp_path):
    prices = write_bars(tmp_path / "XYZ.csv", [100.0] * 10)  # events at minutes 1..10
    funding = write_rows(tmp_path / "funding.csv", "timestamp,funding_rate", [
        f"{at(-30)},0.5",  # before the replay: not ours
        f"{at(3)},0.001",
        f"{at(3.5)},",  # no rate: skipped
        f"{at(6.2)},-0.0005",  # settles at the next price event, at minute 7
        f"{at(60)},0.3",  # after the replay
    ])
    settings = BacktestSettings(external_coin={"XYZ": D(10)}, spread_bps=2.0)
    result = run_backtest({"XYZ": prices}, {"XYZ": funding}, "static", "band", settings)
    # short 10 coins at 100: receives 1 USD at +0.1%, pays 0.5 USD at -0.05%
    assert result["funding_usd"] == D("0.5")
    assert result["net_pnl_usd"] == D("0.5")


def test_funding_parquet_with_a_datetime_index_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    prices = write_bars(tmp_path / "XYZ.csv", [100.0] * 10)
    table = pa.table({"funding_rate": [0.001], "datetime": [T0 + timedelta(minutes=4, milliseconds=3)]})
    pq.write_table(table, tmp_path / "XYZUSDT.parquet")
    settings = BacktestSettings(external_coin={"XYZ": D(10)}, spread_bps=2.0)
    result = run_backtest({"XYZ": prices}, {"XYZ": tmp_path / "XYZUSDT.parquet"}, "static", "band", settings)
    assert result["funding_usd"] == D(1)


def test_without_the_opening_hedge_the_first_decision_trades_and_counts(tmp_path):
    prices = write_bars(tmp_path / "XYZ.csv", [100.0] * 3)
    settings = BacktestSettings(external_coin={"XYZ": D(10)}, spread_bps=2.0, start_hedged=False,
                                rebalance_to=RebalanceTo.TARGET)
    result = run_backtest({"XYZ": prices}, None, "static", "band", settings)
    assert result["trades"] == 1
    assert result["initial_hedge"]["trades"] == 0
    assert result["tracking_error_usd"] == 0  # the first sample has no time behind it


def test_sweep_runs_the_fixed_grid_of_the_policy_in_order(tmp_path):
    prices = write_bars(tmp_path / "XYZ.csv", [100.0 + i for i in range(20)])
    results = sweep({"XYZ": prices}, None, "lp", "timer", BacktestSettings())
    assert [r["settings"]["DK_TIMER_SECS"] for r in results] == [3600.0, 14400.0, 28800.0, 86400.0]
    assert [p["band_pct"] for p in SWEEP_GRID["band"]] == [D("0.5"), D(1), D(2), D(5), D(10)]
    assert [p["risk_aversion_per_usd"] for p in SWEEP_GRID["cost-aware"]] == [1e-6, 1e-5, 1e-4, 1e-3]


def test_cost_aware_trades_less_than_a_tight_band_on_a_pool(tmp_path):
    closes = [100.0 * math.exp(0.01 * math.sin(i / 3.0) + 0.002 * i) for i in range(300)]
    data = load_dataset({"XYZ": write_bars(tmp_path / "XYZ.csv", closes)}, None, "lp", 1.0)
    tight = run_dataset(data, "band", BacktestSettings(default_band=Band(BandUnit.PCT, D("0.05"))))
    aware = run_dataset(data, "cost-aware", BacktestSettings(risk_aversion_per_usd=1e-5))
    assert 0 < aware["trades"] < tight["trades"]
    assert aware["settings"]["DK_RISK_AVERSION"] == 1e-5


def test_results_name_the_settings_by_their_variables(tmp_path):
    prices = write_bars(tmp_path / "XYZ.csv", [100.0] * 3)
    band = run_backtest({"XYZ": prices}, None, "static", "band", BacktestSettings(skip_horizon_secs=3600))
    assert band["settings"] == {
        "DK_POLICY": "band", "DK_REBALANCE_TO": "edge", "DK_DEFAULT_BAND_PCT": D(1),
        "DK_SKIP_HORIZON_SECS": 3600, "DK_RISK_AVERSION": 1e-4, "DK_SLIPPAGE_BPS": D(0),
        "DK_FIXED_COST_USD": D(0),
    }


def test_hedge_pnl_at_the_mid_less_slippage_is_what_the_engine_booked(tmp_path):
    from deltakeeper.backtest.replay import ACCOUNT, COLLATERAL_USD, SETTLE
    from deltakeeper.backtest.replay import Replay as _Replay

    closes = [100.0 * (1.013 if i % 3 else 0.99) ** i for i in range(60)]
    data = load_dataset({"XYZ": write_bars(tmp_path / "XYZ.csv", closes)}, None, "lp:250000", 2.0)
    replay = _Replay(data, "cost-aware", BacktestSettings(risk_aversion_per_usd=1e-3, spread_bps=2.0))
    result = replay.run()
    engine_pnl = replay.engine.balances(ACCOUNT)[SETTLE] - COLLATERAL_USD
    engine_pnl += sum(p.unrealized_pnl or 0 for p in replay.engine.positions(ACCOUNT))
    figures = result["assets"]["XYZ"]
    booked = figures["hedge_pnl_usd"] - figures["slippage_usd"] - figures["fees_usd"]
    booked -= result["initial_hedge"]["slippage_usd"] + result["initial_hedge"]["fees_usd"]
    assert result["trades"] > 3
    assert engine_pnl == pytest.approx(booked, abs=D("0.000001") * (result["trades"] + 1))


def test_an_asset_whose_history_starts_later_is_hedged_before_it_is_first_sampled(tmp_path):
    early = write_bars(tmp_path / "AAA.csv", [100.0] * 6)
    late = write_bars(tmp_path / "BBB.csv", [100.0] * 3, minutes=[3, 4, 5])
    result = run_backtest({"AAA": early, "BBB": late}, None, "static:1000", "band", WIDE)
    assert result["tracking_error_usd"] == 0
    assert result["initial_hedge"]["trades"] == 2
    assert result["assets"]["BBB"]["decisions"] == {"inside_band": 2}


def test_a_hedge_setting_other_than_the_linear_perpetual_is_refused(tmp_path):
    from dataclasses import replace

    from deltakeeper.domain.errors import ConfigError

    prices = write_bars(tmp_path / "BTC.csv", [100.0] * 3)
    settings = replace(BacktestSettings(), hedges={"BTC": "BTC/USD:BTC"})
    with pytest.raises(ConfigError) as error:
        run_backtest({"BTC": prices}, None, "static", "band", settings)
    assert error.value.variable == "DK_ASSETS__BTC__HEDGE"
