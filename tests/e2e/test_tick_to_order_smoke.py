"""Benchmark 1 keeps working: `benchmarks/tick_to_order.py --quick` (the Bybit emulator, the bot and the bare
ccxt.pro baseline, in one process) exits 0 and prints its three verdict lines. No timing is asserted: the
figures are the benchmark's business (benchmarks/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_tick_to_order_benchmark_prints_its_ratios_against_the_bare_ccxt_baseline() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "tick_to_order.py"), "--quick"],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=40,
    )
    assert result.returncode == 0, f"tick_to_order.py failed:\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("ratio ")]
    assert [line.split(":")[0] for line in lines] == [
        "ratio p50 bot / baseline", "ratio p99 bot / baseline", "ratio in-bot p50 / 2 ms",
    ]
    assert all(line.split(")")[1].split()[0] in ("PASS", "MISS") for line in lines)
