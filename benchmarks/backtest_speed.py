"""How fast the backtest replays: price events per second through the full decision path (parse the files,
then per event: quote into the simulated engine, exposure model, funding, asset_deltas, policy, risk check,
orders and fills), against a loop that only parses the same files into the same event objects.

    python benchmarks/backtest_speed.py [--policy cost-aware] [--exposure lp] [--repeat 2] [FILE ...]

Defaults to the Bybit BTC and ETH 5-minute history in ../shared/data (90 days, 2 x 25,920 bars) with a
liquidity-pool exposure. Both loops are timed in this one run, best of `--repeat`; the target is a ratio of
at least 0.2 (the decisions cost at most four times the parsing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deltakeeper.backtest import POLICIES, BacktestSettings, load_dataset, run_dataset
from deltakeeper.backtest.data import parse_file_specs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bybit_linear_5m"
DEFAULT_FILES = [str(DATA / "BTCUSDT_5m.csv"), str(DATA / "ETHUSDT_5m.csv")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES, help="price files (ASSET=FILE or FILE)")
    parser.add_argument("--policy", choices=[*POLICIES, "all"], default="all")
    parser.add_argument("--exposure", default="lp")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    prices = parse_file_specs(args.files, "files")
    settings = BacktestSettings()
    policies = list(POLICIES) if args.policy == "all" else [args.policy]

    parse_secs = float("inf")
    events = 0
    for _ in range(args.repeat):
        started = time.perf_counter()
        data = load_dataset(prices, None, args.exposure, settings.spread_bps)
        parse_secs = min(parse_secs, time.perf_counter() - started)
        events = data.price_events
    parse_rate = events / parse_secs
    print(f"{events} price events from {len(prices)} files ({', '.join(sorted(prices))}), "
          f"exposure {args.exposure}, best of {args.repeat}")
    print(f"{'loop':<28} {'seconds':>8} {'events/s':>10} {'ratio':>6}")
    print(f"{'parse only':<28} {parse_secs:>8.2f} {parse_rate:>10.0f} {1:>6.2f}")
    worst = float("inf")
    for policy in policies:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            run_dataset(load_dataset(prices, None, args.exposure, settings.spread_bps), policy, settings)
            best = min(best, time.perf_counter() - started)
        rate = events / best
        worst = min(worst, rate / parse_rate)
        print(f"{'parse + decide: ' + policy:<28} {best:>8.2f} {rate:>10.0f} {rate / parse_rate:>6.2f}")
    print(f"ratio full/parse (worst policy): {worst:.2f} (target >= 0.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
