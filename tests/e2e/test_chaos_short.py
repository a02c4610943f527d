"""The fault suite's short run (`python chaos/run.py --short`, chaos/README.md): the real bot in a
subprocess trading through the fault-injecting proxy against the Bybit emulator, through corrupted and
absurd frames, order answers lost with their look-ups failing, and a mix of every fault. The books must
agree: no duplicate order, no lost fill, no order on corrupted data, and the bot alive throughout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "chaos" / "run.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def figure(output: str, name: str) -> int:
    found = re.search(rf"^{name}\s+(\d+)$", output, re.MULTILINE)
    assert found, f"no {name!r} line in:\n{output}"
    return int(found.group(1))


def test_short_chaos_run_has_no_duplicate_no_lost_fill_and_no_order_on_corrupted_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    result = subprocess.run([sys.executable, str(RUNNER), "--short", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=170, env=env)
    output = result.stdout
    assert figure(output, "corrupted messages injected") > 0, output
    assert (figure(output, "duplicate orders"), figure(output, "lost fills"),
            figure(output, "orders on corrupted data")) == (0, 0, 0), output
    assert "ran throughout" in output and result.returncode == 0, output + result.stderr[-3000:]
