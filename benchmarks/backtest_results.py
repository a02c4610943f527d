"""Writes benchmarks/BACKTEST_RESULTS.md: the default policy's cost against the timer's at the same tracking
error, on the bundled SOL hours and on the Bybit BTC and ETH 5-minute history; then every policy's fixed
sweep on the Bybit history (90 days) with a liquidity-pool exposure, and the cost of the cost-aware band at
the tracking error of each timer and fixed-band setting.

    python benchmarks/backtest_results.py > benchmarks/BACKTEST_RESULTS.md

Uses the default settings (no `DK_` variables are read), trading to the target and, in a second part, to
the band's edge. Where the fixed cost-aware grid does not reach a timer's or a band's tracking error, extra
cost-aware runs (risk aversion x10 or /10 beyond the grid, marked "extra") are added so that the comparison
interpolates instead of extrapolating.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from deltakeeper.backtest import POLICIES, BacktestSettings, load_dataset, run_dataset, sweep_dataset
from deltakeeper.backtest.report import (
    add_timer_comparison,
    compare_at_same_tracking_error,
    comparison_table,
    grid_label,
    sweep_table,
)
from deltakeeper.config import Settings
from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "src" / "deltakeeper" / "sim" / "data" / "okx_SOL_1h.csv"
DEFAULT_POLICY = str(Settings.model_fields["policy"].default)
DEFAULT_TO = RebalanceTo(Settings.model_fields["rebalance_to"].default)
COMMAND = "python benchmarks/backtest_results.py > benchmarks/BACKTEST_RESULTS.md"
MAX_EXTRA = 2
TIE = 0.02


def te(run: dict[str, Any]) -> float:
    return float(run["tracking_error_usd"])


def bracketing_runs(data: Any, settings: BacktestSettings, grid: list[dict[str, Any]],
                    others: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cost-aware runs beyond the grid until the others' tracking errors are inside the curve's range."""
    extra: list[dict[str, Any]] = []
    low = min(te(r) for r in others)
    ra = max(float(r["settings"]["DK_RISK_AVERSION"]) for r in grid)
    for _ in range(MAX_EXTRA):
        if min(te(r) for r in grid + extra) <= low:
            break
        ra *= 10
        extra.append(run_dataset(data, "cost-aware", replace(settings, risk_aversion_per_usd=ra)))
    high = max(te(r) for r in others)
    ra = min(float(r["settings"]["DK_RISK_AVERSION"]) for r in grid)
    for _ in range(MAX_EXTRA):
        if max(te(r) for r in grid + extra) >= high:
            break
        ra /= 10
        extra.append(run_dataset(data, "cost-aware", replace(settings, risk_aversion_per_usd=ra)))
    return extra


def summarise(rows: list[dict[str, Any]], policy: str) -> str:
    """What the comparison says, from the numbers: cheaper (ratio < 0.98), about the same, or dearer."""
    inside = [r for r in rows if r["how"] == "interpolated"]
    groups = {
        "cheaper": [r for r in inside if r["ratio"] < 1 - TIE],
        "about as costly (within 2%)": [r for r in inside if abs(r["ratio"] - 1) <= TIE],
        "dearer": [r for r in inside if r["ratio"] > 1 + TIE],
    }
    parts = []
    for verdict, group in groups.items():
        if group:
            listed = ", ".join(f"{r['setting']} ({r['ratio']:.2f})" for r in group)
            parts.append(f"{verdict} at {listed}")
    outside = [r["setting"] for r in rows if r["how"] != "interpolated"]
    if outside:
        parts.append(f"not compared (would need extrapolating) at {', '.join(outside)}")
    verdicts = "; ".join(parts)
    return f"Against the {policy}, at the same tracking error the cost-aware band is {verdicts}."


def section(data: Any, settings: BacktestSettings) -> str:
    results: dict[str, list[dict[str, Any]]] = {p: sweep_dataset(data, p, settings) for p in POLICIES}
    extra = bracketing_runs(data, settings, results["cost-aware"], results["timer"] + results["band"])
    curve = sorted(results["cost-aware"] + extra, key=lambda r: float(r["settings"]["DK_RISK_AVERSION"]),
                   reverse=True)
    to = settings.rebalance_to.value
    table = sweep_table({**results, "cost-aware": curve})
    for run in extra:
        label = f"| cost-aware | ra={float(run['settings']['DK_RISK_AVERSION']):g} |"
        table = table.replace(label, label[:-2] + " (extra) |")
    out = [f"## Trading to the {to} (`DK_REBALANCE_TO={to}`)", "", table]
    if extra:
        labels = ", ".join(f"{float(r['settings']['DK_RISK_AVERSION']):g}" for r in extra)
        out += [f"Extra cost-aware runs outside the fixed grid, to bracket the comparisons: risk aversion "
                f"{labels}.", ""]
    for policy in ("timer", "band"):
        rows = compare_at_same_tracking_error(results[policy], curve)
        out += [f"Cost-aware band against the {policy} at the same tracking error (log-log interpolation "
                f"along the cost-aware runs):", "", comparison_table(rows, policy), summarise(rows, policy),
                ""]
    runs = sum(len(r) for r in results.values()) + len(extra)
    out += [f"({runs} runs of {data.price_events:,} price events each.)", ""]
    return "\n".join(out)


def default_against_timer(name: str, data: Any) -> list[str]:
    """Table rows: the default settings, the former default (1 % band to the target) and the cost-aware band
    to the target, each with the timer's cost at its tracking error (`add_timer_comparison`)."""
    default = BacktestSettings(rebalance_to=DEFAULT_TO)
    runs = sweep_dataset(data, "timer", default)
    rows = [
        ("default", run_dataset(data, DEFAULT_POLICY, default)),
        ("former default", run_dataset(data, "band", replace(default, rebalance_to=RebalanceTo.TARGET,
                                                             default_band=Band(BandUnit.PCT, Decimal(1))))),
        ("", run_dataset(data, "cost-aware", replace(default, rebalance_to=RebalanceTo.TARGET))),
    ]
    add_timer_comparison(runs + [run for _, run in rows])
    lines = []
    for what, run in rows:
        versus = run["vs_timer"]
        label = f"{grid_label(run)}, to the {run['settings']['DK_REBALANCE_TO']}"
        lines.append(f"| {name} | {label}{f' ({what})' if what else ''} | {run['trades']:,} | "
                     f"{float(run['cost_usd']):,.0f} | {run['tracking_error_usd']:,.0f} | "
                     f"{versus['timer_cost_usd']:,.0f} | {versus['ratio']:.2f} | {versus['how']} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--exposure", default="lp")
    args = parser.parse_args()
    bars = args.data / "bybit_linear_5m"
    funding = args.data / "pietro_binance_funding_8h"
    prices = {"BTC": bars / "BTCUSDT_5m.csv", "ETH": bars / "ETHUSDT_5m.csv"}
    funding_files = {"BTC": funding / "BTCUSDT.parquet", "ETH": funding / "ETHUSDT.parquet"}
    settings = BacktestSettings()
    data = load_dataset(prices, funding_files, args.exposure, settings.spread_bps)
    first = next(iter(data.series.values())).events
    print("# Backtest: cost against tracking error on real history\n")
    print(f"Reproduce this file with one command, from the repository root:\n\n    {COMMAND}\n")
    print("## The default against the timer\n")
    print(f"The default settings (`DK_POLICY={DEFAULT_POLICY}`, `DK_REBALANCE_TO={DEFAULT_TO.value}`, "
          "risk aversion 1e-4 per USD) against the timer at the same tracking error: the timer's cost at "
          "the run's tracking error is interpolated along its four sweep runs (1h, 4h, 8h, 24h), linear in "
          "log cost against log tracking error (a band's cost goes as a power of its width), between the "
          "two runs that bracket it. Below 1, the run is cheaper than the timer. Both data sets with "
          "`--exposure lp` (a 1,000,000 USD pool per asset); the bundled data is the simulator's 60 days "
          "of OKX SOL hours (src/deltakeeper/sim/data/okx_SOL_1h.csv, its own funding column).\n")
    print("| data | run | trades | cost (USD) | tracking error (USD) | timer's cost at that tracking error "
          "(USD) | cost / timer's | |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    bundled = load_dataset({"SOL": BUNDLED}, {"SOL": BUNDLED}, args.exposure, settings.spread_bps)
    for line in default_against_timer("bundled SOL 1h", bundled) + default_against_timer("Bybit BTC+ETH 5m",
                                                                                         data):
        print(line)
    print()
    print("Each policy's rows are one `--sweep` of the backtest command with no `DK_` variables set, e.g.\n\n"
          "    python -m deltakeeper.backtest --prices ../shared/data/bybit_linear_5m/BTCUSDT_5m.csv "
          "--prices ../shared/data/bybit_linear_5m/ETHUSDT_5m.csv "
          "--funding BTC=../shared/data/pietro_binance_funding_8h/BTCUSDT.parquet "
          "--funding ETH=../shared/data/pietro_binance_funding_8h/ETHUSDT.parquet "
          "--exposure lp --policy cost-aware --sweep [--rebalance-to edge] [--format json] "
          "[--plot cost.png]\n")
    print(f"- Prices: Bybit linear perpetual 5-minute bars, BTCUSDT and ETHUSDT, "
          f"{first[0].ts:%Y-%m-%d %H:%M} to {first[-1].ts:%Y-%m-%d %H:%M} UTC "
          f"(../shared/data/bybit_linear_5m, {data.price_events:,} price events: one per bar close and "
          "asset).")
    print("- Funding: Binance USDT-M 8h rates for the same window (../shared/data/pietro_binance_funding_8h; "
          "Bybit's are not in the data), settled at their timestamps. Funding does not enter cost or "
          "tracking error.")
    print(f"- Exposure: `--exposure {args.exposure}`: a constant-product pool (x*y=k against USD) per asset, "
          "1,000,000 USD at the first price, half in the coin: its holdings move with the price "
          "(x = sqrt(k/S)). Hedged with the asset's linear perpetual on the simulated exchange.")
    print(f"- Market: quotes {settings.spread_bps:g} bp wide around each close; market orders walk the "
          "simulator's synthetic book (50,000 USD x (level + 1) per level, levels 1 bp apart); Bybit's taker "
          "fee 5.5 bp. The opening hedge (the same for every run) is outside the figures.")
    print("- Cost = fees + slippage against the mid (which includes the half spread). Tracking error = "
          "time-weighted RMS of the portfolio's USD deviation from target (BTC and ETH deviations summed), "
          "sampled before each price event's decision; the BTC TE and ETH TE columns are each asset's own.")
    print("- Default settings otherwise: cost-aware hard maximum deviation 10% of gross exposure, no "
          "slippage estimate beyond the quoted spread, EWMA decay 0.94 a day (0.94^(1/288) per 5-minute "
          "bar), skip rule off. The fixed band's percentage is of the asset's gross exposure, |pool coins| + "
          "|hedge|, about twice the pool's coins.\n")
    for to in (RebalanceTo.TARGET, RebalanceTo.EDGE):
        print(section(data, replace(settings, rebalance_to=to)))
    print("The timer always trades to the target, so its rows are the same in both parts.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
