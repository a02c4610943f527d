"""The dashboard page in headless Chromium (DESIGN.md 9): Debian's `chromium`, driven by Playwright with
its `executable_path` (nothing downloads a browser), against a running `deltakeeper run`. A screenshot is
kept under the test's tmp dir and copied to `$DK_TEST_ARTIFACTS` (default `test-artifacts/` at the root of
the repository)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli_helpers import clean_env

CHROMIUM = Path(os.environ.get("DK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "dashboard-test-token"
REPO = Path(__file__).resolve().parents[2]

if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (Debian's package), or set DK_CHROMIUM",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright is not installed: pip install -e '.[test]' (never `playwright install`)",
)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("DK_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_for(condition: Callable[[], bool], timeout_secs: float, what: str) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        time.sleep(0.3)


def api(port: int, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


CHART_STATE = """() => [...document.querySelectorAll("canvas")].map(c => {
  const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
  return {id: c.id, points: Number(c.dataset.points || 0), inked};
})"""


def test_dashboard_renders_delta_band_trades_and_costs_with_data_in_headless_chromium(
    data_dir: Path, tmp_path: Path
) -> None:
    env = clean_env(data_dir, DK_SIM_SPEED="1800", DK_RECOMPUTE_SECS="2", DK_HTTP_TOKEN=TOKEN)
    bot = subprocess.Popen(
        [sys.executable, "-m", "deltakeeper", "run", "--for", "40s"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port_file = data_dir / "http_port"
        wait_for(port_file.exists, 20, "the bot's HTTP server")
        port = int(port_file.read_text())
        # Decisions, hedge trades and a funding payment (every 8 simulated hours: 16 s at 1800x).
        wait_for(lambda: len(api(port, "/api/journal/decisions")) >= 3, 20, "decisions")
        wait_for(lambda: bool(api(port, "/api/journal/fills")), 20, "a hedge trade")
        wait_for(lambda: bool(api(port, "/api/journal/funding")), 25, "a funding payment")

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
                page.wait_for_function(
                    """() => {
                      const canvases = [...document.querySelectorAll("canvas")];
                      return canvases.length >= 2 && canvases.every(c => Number(c.dataset.points) > 0);
                    }""",
                    timeout=15_000,
                )
                charts = {c["id"]: c for c in page.evaluate(CHART_STATE)}
                status = page.inner_text("#status")
                headings = page.locator("h2").all_inner_texts()
                address = page.url
                screenshot = tmp_path / "dashboard.png"
                page.screenshot(path=str(screenshot), full_page=True)

                # The same page without the token: the journal API refuses it, and the page says so.
                anonymous = browser.new_page()
                anonymous.goto(f"http://127.0.0.1:{port}/")
                anonymous.wait_for_function(
                    "() => document.getElementById('status').textContent.startsWith('could not')"
                )
                refused = anonymous.inner_text("#status")
            finally:
                browser.close()
        shutil.copy(screenshot, artifacts_dir() / "dashboard.png")

        bot.send_signal(signal.SIGTERM)
        _, stderr = bot.communicate(timeout=30)
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.communicate()
    assert bot.returncode == 0, stderr[-3000:]

    assert set(charts) == {"delta-SOL", "costs"}, charts
    # The delta chart: four lines (delta, target, target ± band) over every decision, plus a marker
    # per hedge trade; the costs chart: cumulative fees and funding.
    assert charts["delta-SOL"]["points"] >= 4 * 3 + 1
    assert charts["costs"]["points"] >= 2
    assert all(chart["inked"] > 500 for chart in charts.values()), charts
    assert "SOL: delta against its band (coins)" in headings
    assert " decisions, " in status and " fills, " in status and "funding payment" in status
    assert "#token" not in address  # the token is taken from the address and kept out of it
    assert refused == "could not load the journal: decisions: HTTP 401"
    assert screenshot.stat().st_size > 10_000
