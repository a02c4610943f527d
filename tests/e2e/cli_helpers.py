"""Running the real `deltakeeper` command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def clean_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env.update({"DK_DATA_DIR": str(data_dir), "DK_LOG_FORMAT": "json", "DK_HTTP_PORT": "0"})
    env.update(overrides)
    return env


def deltakeeper(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deltakeeper", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def journal(view: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = deltakeeper("journal", view, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def journals(env: dict[str, str], *views: str) -> list[list[dict[str, Any]]]:
    """`journal(view, env)` for each view, the commands running side by side."""
    with ThreadPoolExecutor(len(views)) as pool:
        return list(pool.map(lambda view: journal(view, env), views))


def deltakeeper_on_terminal(*args: str, env: dict[str, str], columns: int, timeout: float = 60
                            ) -> tuple[int, str]:
    """(exit code, output without colours) of the command with stdout and stderr on a pseudo-terminal
    `columns` wide, $COLUMNS set to match."""
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios
    import time

    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "deltakeeper", *args],
                               env={**env, "COLUMNS": str(columns)}, stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while select.select([master], [], [], max(deadline - time.monotonic(), 0))[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            output += chunk
    except OSError:  # the terminal's other end closed: the command is done
        pass
    finally:
        os.close(master)
    code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode()).replace("\r\n", "\n")
    return code, text
