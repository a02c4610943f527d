"""The benchmarks keep working: each runs on its tiny input (`--quick`) in a subprocess, exits 0 and prints
its verdict lines. No timing is asserted: the figures are the benchmarks' business (benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
POSTGRES_URL_VARIABLE = "DK_TEST_POSTGRES_URL"


def run_quick(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=50, env=env,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def ratio_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("ratio ")]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_decision_cost_benchmark_prints_each_policy_s_decisions_against_the_ccxt_parse() -> None:
    lines = ratio_lines(run_quick("decision_cost.py"))
    assert [line.split(":")[0] for line in lines] == [
        f"ratio decision {policy}, {case} / ccxt parse"
        for policy in ("band", "cost-aware")
        for case in ("inside band (no trade)", "outside band (order)")
    ]
    assert all(line.endswith(("PASS", "MISS")) for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_backtest_speed_benchmark_prints_each_policy_against_the_parse() -> None:
    lines = ratio_lines(run_quick("backtest_speed.py"))
    assert [line.split(":")[0] for line in lines] == [
        f"ratio backtest {policy} / parse" for policy in ("timer", "band", "cost-aware")
    ]
    assert all(line.endswith(("PASS", "MISS")) for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_journal_benchmark_prints_sqlite_figures_and_says_postgresql_was_skipped() -> None:
    env = {k: v for k, v in os.environ.items() if k != POSTGRES_URL_VARIABLE}
    output = run_quick("journal_throughput.py", env=env)
    lines = ratio_lines(output)
    assert [line.split(":")[0] for line in lines] == [
        "ratio sqlite one by one / target", "ratio sqlite batched / target",
    ]
    assert "PostgreSQL: skipped" in output
    assert "none duplicated" in output


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_journal_benchmark_prints_postgresql_figures() -> None:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: the PostgreSQL part needs a server URL")
    lines = ratio_lines(run_quick("journal_throughput.py", "--postgres-url", url))
    assert [line.split(":")[0] for line in lines if "postgresql" in line] == [
        "ratio postgresql one by one / target", "ratio postgresql batched / target",
    ]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_soak_benchmark_prints_memory_and_task_growth() -> None:
    lines = ratio_lines(run_quick("soak.py"))
    assert [line.split(":")[0] for line in lines] == [
        "ratio resident memory growth after warm-up / 5%", "ratio open tasks growth after warm-up / 5%",
    ]
