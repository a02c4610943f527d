"""`deltakeeper fault-proxy` in a subprocess, in front of `deltakeeper sim-exchange`: it prints the address
it listens on, forwards requests, and its faults are switched and counted through its control API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TICKERS = "/v5/market/tickers?category=linear&symbol=SOLUSDT"


@contextmanager
def listening(args: list[str], workdir: Path, name: str) -> Iterator[str]:
    """Run `deltakeeper *args`; the URL it prints on its `listening on` line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env["DK_DATA_DIR"] = str(workdir / name)
    out = workdir / f"{name}.out"
    with out.open("wb") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "deltakeeper", *args], env=env, stdout=stdout,
                                   stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (lines := [x for x in out.read_text().splitlines() if x.startswith("listening on ")]):
            assert process.poll() is None and time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.1)
        yield lines[0].removeprefix("listening on ").strip()
    finally:
        process.terminate()
        process.wait(20)


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def test_fault_proxy_command_forwards_and_injects_what_it_is_told(tmp_path: Path) -> None:
    with listening(["sim-exchange", "--port", "0"], tmp_path, "emulator") as upstream, \
            listening(["fault-proxy", "--upstream", upstream, "--port", "0", "--seed", "3"], tmp_path,
                      "proxy") as proxy:
        status, answer = call(proxy + TICKERS)
        assert status == 200 and answer["result"]["list"][0]["symbol"] == "SOLUSDT"
        assert call(proxy + "/proxy/faults", {"rest_5xx": 1})[1]["rest_5xx"] == 1
        assert call(proxy + TICKERS)[0] == 503
        assert call(proxy + "/proxy/faults", {"rest_5xx": "often"})[0] == 400
        counts = call(proxy + "/proxy/counts")[1]
        assert counts == {"injected": {"rest_5xx": 1}, "rest_forwarded": 1, "ws_frames_forwarded": 0}
