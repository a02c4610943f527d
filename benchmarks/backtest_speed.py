"""Benchmark 3: backtest speed. Price events per second through the full decision path and the simulated
engine, against a loop that parses the same data into the same event objects and does nothing else.
Target: at least 0.2x (deciding costs at most four times the parsing).

    python benchmarks/backtest_speed.py [--quick] [--policy timer] [--exposure lp] [--repeat 3] [FILE ...]

Baseline: `load_dataset`, which reads the price files and turns every bar into its price event (the quote,
the mid, the time), and nothing else. Timed against it: `load_dataset` then `run_dataset`, the backtest
itself: per event the quote into the simulated engine, the exposure model, funding, `asset_deltas`, the
policy (`DK_POLICY`: timer, band, cost-aware), the risk check, orders and fills (backtest/run.py). Rates are
price events per second of the whole loop, parsing included on both sides.

Defaults to the Bybit BTC and ETH 5-minute history in ../shared/data (90 days, 2 x 25,920 bars) with a
liquidity-pool exposure. `--quick` (the smoke test's) replays the simulator's bundled SOL history instead
(1,433 hourly bars), once. The loops alternate in rounds; each figure is the best of `--repeat` rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from _common import fmt_rate, machine, ratio_line, table

from deltakeeper.backtest import POLICIES, BacktestSettings, load_dataset, run_dataset
from deltakeeper.backtest.data import parse_file_specs
from deltakeeper.sim.feeds import BUNDLED_EXCERPT

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bybit_linear_5m"
DEFAULT_FILES = [str(DATA / "BTCUSDT_5m.csv"), str(DATA / "ETHUSDT_5m.csv")]
TARGET_RATIO = 0.2
PARSE = "parse only (baseline)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="price files (ASSET=FILE or FILE); default: BTC and ETH 5m")
    parser.add_argument("--quick", action="store_true", help="the bundled SOL history, once (smoke test)")
    parser.add_argument("--policy", choices=[*POLICIES, "all"], default="all")
    parser.add_argument("--exposure", default="lp")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = BacktestSettings()
    policies = list(POLICIES) if args.policy == "all" else [args.policy]
    with resources.as_file(resources.files("deltakeeper.sim") / "data" / BUNDLED_EXCERPT) as bundled:
        specs = args.files or ([f"SOL={bundled}"] if args.quick else DEFAULT_FILES)
        prices = parse_file_specs(specs, "files")
        repeat = 1 if args.quick else args.repeat

        best = {name: float("inf") for name in [PARSE, *policies]}
        trades: dict[str, int] = {}
        events = 0
        for _ in range(repeat):
            started = time.perf_counter()
            events = load_dataset(prices, None, args.exposure, settings.spread_bps).price_events
            best[PARSE] = min(best[PARSE], time.perf_counter() - started)
            for policy in policies:
                started = time.perf_counter()
                result = run_dataset(load_dataset(prices, None, args.exposure, settings.spread_bps), policy,
                                     settings)
                best[policy] = min(best[policy], time.perf_counter() - started)
                trades[policy] = result["trades"]

    rates = {name: events / secs for name, secs in best.items()}
    print("benchmark 3: backtest speed, price events per second (parsing included)")
    print(machine())
    print(f"{events:,} price events from {len(prices)} files ({', '.join(sorted(prices))}), exposure "
          f"{args.exposure}; best of {repeat} rounds")
    print()
    print(table(
        ["loop", "seconds", "events/s", "vs parse", "trades"],
        [[name if name == PARSE else f"parse + backtest: {name}", f"{best[name]:.2f}", fmt_rate(rates[name]),
          f"{rates[name] / rates[PARSE]:.2f}x", "" if name == PARSE else f"{trades[name]:,}"]
         for name in best],
    ))
    print()
    for policy in policies:
        ratio = rates[policy] / rates[PARSE]
        print(ratio_line(f"backtest {policy} / parse", ratio, f">= {TARGET_RATIO}", ratio >= TARGET_RATIO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
