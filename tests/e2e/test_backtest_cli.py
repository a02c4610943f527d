"""`deltakeeper backtest` on two days of real Bybit 5-minute history (../shared/data, next to the repo)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest

from deltakeeper.cli.backtest import OutputFormat, backtest
from deltakeeper.domain.errors import ConfigError
from tests.e2e.cli_helpers import clean_env

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
BYBIT_5M = SHARED_DATA / "bybit_linear_5m"
FUNDING_8H = SHARED_DATA / "pietro_binance_funding_8h"
TWO_DAYS = 2 * 288

pytestmark = pytest.mark.skipif(
    not (BYBIT_5M / "BTCUSDT_5m.csv").is_file(),
    reason=f"the shared market data is not at {SHARED_DATA} (a checkout without ../shared/data)",
)


@pytest.fixture
def btc_two_days(tmp_path: Path) -> Path:
    """The first two days of BTCUSDT 5-minute bars (576 bars)."""
    with (BYBIT_5M / "BTCUSDT_5m.csv").open() as source:
        lines = [next(source) for _ in range(TWO_DAYS + 1)]
    path = tmp_path / "BTCUSDT_5m.csv"
    path.write_text("".join(lines))
    return path


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deltakeeper.backtest", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_backtest_module_prints_one_json_object_with_money_as_decimal_strings(btc_two_days, data_dir):
    funding = FUNDING_8H / "BTCUSDT.parquet"
    result = run_module("--prices", str(btc_two_days), "--funding", f"BTC={funding}", "--exposure", "lp",
                        "--policy", "cost-aware", "--format", "json", env=clean_env(data_dir))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    for key in ("trades", "traded_notional_usd", "fees_usd", "slippage_usd", "funding_usd", "hedge_pnl_usd",
                "tracking_error_usd", "max_abs_delta_usd", "settings", "assets"):
        assert key in doc, key
    for key in ("traded_notional_usd", "fees_usd", "slippage_usd", "funding_usd", "hedge_pnl_usd"):
        assert isinstance(doc[key], str) and "e" not in doc[key].lower(), (key, doc[key])
        Decimal(doc[key])
    assert isinstance(doc["tracking_error_usd"], float)
    assert doc["price_events"] == TWO_DAYS
    assert doc["start"] == "2025-04-03T17:10:00Z"
    assert doc["settings"]["DK_POLICY"] == "cost-aware"
    assert list(doc["assets"]) == ["BTC"]
    btc = doc["assets"]["BTC"]
    assert btc["hedge"] == "BTC/USDT:USDT"
    # a 1M USD pool is 500k USD of BTC: hedged short, the deviation held to a few percent of that
    assert 0 < doc["tracking_error_usd"] < 25_000
    assert Decimal(doc["funding_usd"]) != 0  # six 8h settlements in two days
    # the hedge offsets the pool's PnL to within its costs and tracking
    assert abs(Decimal(btc["hedge_pnl_usd"]) + Decimal(btc["exposure_pnl_usd"])) < Decimal(5_000)


def test_backtest_module_hedges_a_book_of_short_calls_with_the_cost_aware_band(btc_two_days, data_dir):
    result = run_module("--prices", str(btc_two_days), "--exposure", "calls:-10", "--option-vol", "0.5",
                        "--policy", "cost-aware", "--format", "json", env=clean_env(data_dir))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["exposure"] == "calls:-10:110:30"
    assert doc["option_vol"] == 0.5
    btc = doc["assets"]["BTC"]
    book = btc["options"]
    assert book["contracts"] == "-10" and book["settled"] is False
    assert book["expiry"] == "2025-05-03T17:10:00Z"  # 30 days after the first price event
    first_close = float(btc_two_days.read_text().splitlines()[1].split(",")[4])
    assert float(book["strike_usd"]) == pytest.approx(1.10 * first_close, rel=1e-4)
    # short calls are short delta: the hedge is long, and it offsets most of the calls' PnL
    assert 0 < Decimal(btc["final_hedge_coin"]) < 10
    assert Decimal(btc["exposure_pnl_usd"]) != 0 and btc["trades"] > 0
    assert abs(Decimal(btc["hedge_pnl_usd"]) + Decimal(btc["exposure_pnl_usd"])) < Decimal(5_000)


def test_backtest_module_refuses_bad_input_with_exit_2_naming_the_flag(btc_two_days, data_dir):
    result = run_module("--prices", str(btc_two_days), "--exposure", "pool", env=clean_env(data_dir))
    assert result.returncode == 2
    assert "--exposure" in result.stderr


def test_sweep_prints_a_list_over_the_fixed_grid_and_plots_cost_against_tracking_error(
    btc_two_days, tmp_path, capsys, monkeypatch
):
    pytest.importorskip("matplotlib")
    for name in ("DK_POLICY", "DK_DEFAULT_BAND_PCT", "DK_REBALANCE_TO"):
        monkeypatch.delenv(name, raising=False)
    plot = tmp_path / "cost.png"
    backtest(prices=[str(btc_two_days)], exposure="lp:200000", policy="band", sweep=True,
             fmt=OutputFormat.json, plot=plot)
    runs = json.loads(capsys.readouterr().out)
    assert [r["settings"]["DK_DEFAULT_BAND_PCT"] for r in runs] == ["0.5", "1", "2", "5", "10"]
    trades = [r["trades"] for r in runs]
    assert trades == sorted(trades, reverse=True)  # a wider band trades less
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_format_has_a_row_per_asset_and_the_portfolio(btc_two_days, capsys, monkeypatch):
    monkeypatch.delenv("DK_POLICY", raising=False)
    backtest(prices=[f"XBT={btc_two_days}"], exposure="static:10000", policy="timer", timer="4h")
    out = capsys.readouterr().out
    assert "timer 4h XBT" in out and "timer 4h portfolio" in out


def test_funding_for_an_asset_without_prices_is_refused(btc_two_days):
    with pytest.raises(ConfigError, match="--funding"):
        backtest(prices=[str(btc_two_days)], funding=[f"ETH={FUNDING_8H / 'ETHUSDT.parquet'}"])


BUNDLED_SOL = Path(__file__).parents[2] / "src" / "deltakeeper" / "sim" / "data" / "okx_SOL_1h.csv"


def test_funding_that_stops_before_the_prices_end_is_reported_on_stderr_and_in_the_result(data_dir):
    # the bundled SOL hours run to 2026-03-05 17:00; Binance's SOL funding in the shared data ends 02-24 16:00
    funding = FUNDING_8H / "SOLUSDT.parquet"
    result = run_module("--prices", f"SOL={BUNDLED_SOL}", "--funding", f"SOL={funding}", "--policy", "timer",
                        "--format", "json", env=clean_env(data_dir))
    assert result.returncode == 0, result.stderr
    gap = ("SOL: no funding rate from 2026-02-24 16:00 to 2026-03-05 17:00 UTC in SOLUSDT.parquet "
           "(funding is not counted there)")
    assert result.stderr.splitlines() == [f"warning: {gap}"]
    assert json.loads(result.stdout)["warnings"] == [gap]
    covered = run_module("--prices", f"SOL={BUNDLED_SOL}", "--funding", f"SOL={BUNDLED_SOL}",
                         "--policy", "timer", "--format", "json", env=clean_env(data_dir))
    assert covered.stderr == "" and json.loads(covered.stdout)["warnings"] == []


def test_several_policies_sweep_onto_one_frontier_plot_beside_the_timer(btc_two_days, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "frontier.png"
    backtest(prices=[str(btc_two_days)], exposure="lp:200000", policy="timer,band,cost-aware", sweep=True,
             fmt=OutputFormat.json, plot=plot)
    runs = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in runs] == ["timer"] * 4 + ["band"] * 5 + ["cost-aware"] * 4
    assert all("vs_timer" not in r for r in runs[:4])
    timers = sorted((r["tracking_error_usd"], float(r["cost_usd"])) for r in runs[:4])
    for run in runs[4:]:  # the timer's cost at the run's tracking error, log-log between its two neighbours
        versus = run["vs_timer"]
        assert versus["ratio"] == pytest.approx(float(run["cost_usd"]) / versus["timer_cost_usd"], rel=1e-3)
        te = run["tracking_error_usd"]
        if timers[0][0] <= te <= timers[-1][0]:
            assert versus["how"] == "interpolated"
            low, high = next((a, b) for a, b in pairwise(timers) if a[0] <= te <= b[0])
            y0, y1 = low[1], high[1]
            assert min(y0, y1) <= versus["timer_cost_usd"] <= max(y0, y1)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_series_draws_one_run_over_time(btc_two_days, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "series.png"
    backtest(prices=[str(btc_two_days)], exposure="lp:200000", policy="cost-aware", fmt=OutputFormat.json,
             plot_series=plot)
    doc = json.loads(capsys.readouterr().out)
    assert "series" not in doc and "series" not in doc["assets"]["BTC"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="one run"):
        backtest(prices=[str(btc_two_days)], policy="cost-aware", sweep=True, plot_series=plot)
