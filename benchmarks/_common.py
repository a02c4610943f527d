"""What the benchmark scripts share: the machine line, tables, the verdict against a target, memory.

Every script prints, after its table, one line per figure that starts with `ratio` and says how the figure
compares with its target (`PASS` or `MISS`); `tests/e2e/test_benchmarks_smoke.py` looks for those lines.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def machine() -> str:
    """Python, CPUs and the load average when the run started: on a shared machine the load explains
    much of the spread between two runs."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {load}")


def rss_bytes() -> tuple[int, int]:
    """Resident memory of this process, and the part of it that is not file-backed or shared (the heap:
    Python's objects and C libraries' own allocations, SQLite's page cache among them), from
    /proc/self/statm (pages)."""
    with open("/proc/self/statm") as handle:
        fields = handle.read().split()
    resident, shared = int(fields[1]) * PAGE_SIZE, int(fields[2]) * PAGE_SIZE
    return resident, resident - shared


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:],
                                                                                     strict=True))]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def ratio_line(what: str, ratio: float, target: str, ok: bool, detail: str = "") -> str:
    """`ratio <what>: <ratio>x (target <target>) PASS|MISS [detail]`: the line the smoke test looks for."""
    tail = f"  {detail}" if detail else ""
    return f"ratio {what}: {ratio:.3g}x (target {target}) {verdict(ok)}{tail}"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"
