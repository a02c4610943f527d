"""Log lines show computed figures (delta, band, funding rate) rounded for people; the journal keeps them
exact: a short run of the real command on the simulator with the cost-aware band, whose width is a long
computed Decimal."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

from tests.e2e.cli_helpers import clean_env, deltakeeper, journal

NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def significant_digits(text: str) -> int:
    return len(text.replace("-", "").replace(".", "").lstrip("0").rstrip("0") or "0")


def test_logs_round_computed_figures_and_the_journal_keeps_them_exact(data_dir: Path) -> None:
    env = clean_env(data_dir, DK_POLICY="cost-aware", DK_SIM_SPEED="7200", DK_RECOMPUTE_SECS="0.5")
    result = deltakeeper("run", "--for", "4s", env=env, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    numbers = {(line["event"], key): value for line in lines for key, value in line.items()
               if isinstance(value, str) and NUMBER.match(value)}
    long = {where: value for where, value in numbers.items() if significant_digits(value) > 10}
    assert not long, long

    cycles = [line for line in lines if line["event"] == "rebalance_cycle"]
    assert cycles
    exact = {Decimal(d["band_coin"]) for d in journal("decisions", env)}
    assert max(significant_digits(str(band)) for band in exact) > 10  # the journal: every digit
    for cycle in cycles:  # the log: six significant digits of a journaled band
        band = Decimal(cycle["band_coin"])
        assert significant_digits(cycle["band_coin"]) <= 6
        assert any(abs(band - value) <= abs(value) * Decimal("1e-5") for value in exact), cycle
