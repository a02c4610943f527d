"""The operator's console in headless Chromium (DESIGN.md 9): Debian's `chromium`, driven by Playwright with
its `executable_path` (nothing downloads a browser), against two running `deltakeeper run` processes: one
trading (then halted from the console's own button), one held REDUCE_ONLY by a tiny position limit.
Screenshots of the three states go under the test's tmp dir and are copied to `$DK_TEST_ARTIFACTS`
(default `test-artifacts/` at the root of the repository)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
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


@contextmanager
def bot(data_dir: Path, **env: str) -> Iterator[int]:
    """A `deltakeeper run` on the simulator with a token; yields its HTTP port, stops it with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deltakeeper", "run", "--for", "90s"],
        env=clean_env(data_dir, DK_SIM_SPEED="1800", DK_RECOMPUTE_SECS="2", DK_HTTP_TOKEN=TOKEN, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port_file = data_dir / "http_port"
        wait_for(port_file.exists, 30, "the bot's HTTP server")
        yield int(port_file.read_text())
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def number(text: str) -> Decimal:
    """A number as the console shows it: `1,234.5`, `−$78.25`, `$0.00`."""
    return Decimal(text.replace(",", "").replace("$", "").replace("−", "-").split()[0])


LOADED_STATE = """state => document.body.dataset.loaded === "true"
  && document.getElementById("state-banner").dataset.state === state"""

CHART = """asset => {
  const chart = window.dkCharts[asset];
  return {
    canvases: document.querySelectorAll(`#chart-${asset} canvas`).length,
    points: Number(chart.plot.root.dataset.points),
    axes: chart.axes.map(a => a.label),
    series: chart.plot.series.map(s => s.label),
    range: chart.range,
    clipped: chart.clipped,
    note: chart.note.textContent,
    delta: chart.plot.data[1],
  };
}"""


def test_console_shows_trading_reduce_only_and_halted_in_headless_chromium(tmp_path: Path) -> None:
    shots = {}
    with bot(tmp_path / "trading") as port, bot(tmp_path / "reduce", DK_MAX_POSITION_USD="1000") as reduced:
        wait_for(lambda: len(api(port, "/api/journal/decisions")) >= 3, 30, "decisions")
        wait_for(lambda: bool(api(port, "/api/journal/fills")), 30, "a hedge trade")
        wait_for(lambda: api(reduced, "/api/status")["trading"]["state"] == "reduce_only", 30, "reduce-only")

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
                page.wait_for_function(LOADED_STATE, arg="active", timeout=15_000)
                page.wait_for_function("() => window.dkCharts.SOL && Number(window.dkCharts.SOL.plot.root"
                                       ".dataset.points) >= 3", timeout=15_000)
                # Hover: the tooltip shows the point's values; drag: the time axis zooms in.
                overlay = page.locator("#chart-SOL .u-over")
                box = overlay.bounding_box()
                assert box is not None
                overlay.hover(position={"x": box["width"] * 0.6, "y": box["height"] / 2})
                tooltip = page.inner_text("#chart-SOL .tooltip")
                span = "() => window.dkCharts.SOL.plot.scales.x.max - window.dkCharts.SOL.plot.scales.x.min"
                full_span = page.evaluate(span)
                page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + 50)
                page.mouse.down()
                page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 50, steps=5)
                page.mouse.up()
                zoomed_span = page.evaluate(span)
                overlay.dblclick(position={"x": box["width"] * 0.4, "y": 50})
                page.mouse.move(0, 0)
                trading = {
                    "tooltip": tooltip,
                    "zoom": (full_span, zoomed_span, page.evaluate(span)),
                    "banner": page.inner_text("#state-banner"),
                    "chart": page.evaluate(CHART, "SOL"),
                    "address": page.url,
                    "token_field": page.input_value("#token"),
                }
                shots["trading"] = tmp_path / "console-trading.png"
                page.screenshot(path=str(shots["trading"]), full_page=True)

                # Halt from the console: the prompt asks for the reason; then the banner turns red.
                page.once("dialog", lambda dialog: dialog.accept("e2e: operator halt"))
                page.click("#halt")
                page.wait_for_function(LOADED_STATE, arg="halted", timeout=15_000)
                page.evaluate("() => refresh()")  # one more read, in the halted state (nothing trades)
                page.wait_for_timeout(500)
                halted = {
                    "banner": page.inner_text("#state-banner"),
                    "body_class": page.get_attribute("body", "class"),
                    "title": page.title(),
                    "control_result": page.inner_text("#control-result"),
                    "position": page.inner_text("#assets tbody tr td:nth-child(8)"),
                    "hedge": page.inner_text("#assets tbody tr td:nth-child(7)"),
                    "fees": page.inner_text("#pnl td[data-key=fees]"),
                    "traded": page.inner_text("#pnl td[data-key=traded]"),
                    "hedge_pnl": page.inner_text("#pnl td[data-key=hedge-pnl]"),
                    "fills": page.locator("#fills tbody tr").count(),
                    "orders": page.locator("#orders tbody tr").count(),
                    "alerts": page.inner_text("#alerts"),
                    "streams": page.inner_text("#streams"),
                    "margin": page.inner_text("#margin"),
                }
                status = api(port, "/api/status")
                summary = api(port, "/api/console/summary")
                recent = {view: api(port, f"/api/console/recent/{view}?limit=20")
                          for view in ("fills", "orders")}
                shots["halted"] = tmp_path / "console-halted.png"
                page.screenshot(path=str(shots["halted"]), full_page=True)

                other = browser.new_page(viewport={"width": 1280, "height": 1000})
                other.goto(f"http://127.0.0.1:{reduced}/#token={TOKEN}")
                other.wait_for_function(LOADED_STATE, arg="reduce_only", timeout=15_000)
                other.wait_for_function("() => window.dkCharts.SOL", timeout=15_000)
                reduce_only = {"banner": other.inner_text("#state-banner"),
                               "chart": other.evaluate(CHART, "SOL")}
                shots["reduce_only"] = tmp_path / "console-reduce-only.png"
                other.screenshot(path=str(shots["reduce_only"]), full_page=True)

                # Without the token the API refuses the page, and the banner says so.
                anonymous = browser.new_page()
                anonymous.goto(f"http://127.0.0.1:{port}/")
                anonymous.wait_for_function(
                    "() => document.getElementById('state-banner').dataset.state === 'error'"
                )
                refused = anonymous.inner_text("#state-banner")
            finally:
                browser.close()
    for name, shot in shots.items():
        assert shot.stat().st_size > 20_000, name
        shutil.copy(shot, artifacts_dir() / shot.name)

    assert trading["banner"].startswith("TRADING")
    assert trading["chart"]["canvases"] >= 1 and trading["chart"]["points"] >= 3
    assert trading["chart"]["axes"] == ["time (UTC)", "delta (SOL, coins)"]
    assert "beyond the axis (at its edge)" in trading["chart"]["series"]
    # The first decision sees the simulator's unhedged 1,000 SOL: marked at the axis's edge, which stays
    # near the band (about 20 coins) instead of stretching to 1,000.
    chart = trading["chart"]
    assert max(chart["delta"]) >= 900 and chart["clipped"] >= 1, chart
    assert chart["range"][1] < 200 and "beyond the axis, marked at its edge" in chart["note"], chart
    assert "#token" not in trading["address"] and trading["token_field"] == TOKEN
    assert "UTC\ndelta " in trading["tooltip"] and " SOL\ntarget " in trading["tooltip"], trading["tooltip"]
    assert "bands" in trading["tooltip"]
    full_span, zoomed_span, reset_span = trading["zoom"]
    assert zoomed_span < full_span / 3 and reset_span == full_span

    assert halted["banner"].startswith("HALTED") and "e2e: operator halt" in halted["banner"]
    assert "halted" in (halted["body_class"] or "") and halted["title"].startswith("HALTED")
    assert halted["control_result"] == "halt: done"
    sol = status["assets"]["SOL"]
    assert status["trading"]["state"] == "halted"
    assert halted["hedge"] == sol["hedge_symbol"]
    assert number(halted["position"]) == Decimal(sol["position_contracts"])
    assert number(halted["fees"]) == Decimal(summary["fees_usd"])
    assert number(halted["traded"]) == Decimal(summary["traded_usd"])
    assert halted["hedge_pnl"].startswith(("$", "−$"))  # marked at a price that moves on while halted
    assert f"in {summary['fills']} fills" in halted["traded"]
    assert 1 <= halted["fills"] <= 20 and 1 <= halted["orders"] <= 20
    # halted, nothing more trades: the tables show what the journal holds
    assert (halted["fills"], halted["orders"]) == (len(recent["fills"]), len(recent["orders"]))
    assert "rebalance_completed" in halted["alerts"]
    assert "SOL/USDT:USDT" in halted["streams"] and "account headroom" in halted["margin"]

    assert reduce_only["banner"].startswith("REDUCE-ONLY") and "max_position" in reduce_only["banner"]
    # Held at about 1,000 SOL by the position limit: most points are on the axis, not clipped.
    held = reduce_only["chart"]
    assert held["range"][1] > 900 and held["clipped"] < len(held["delta"]) / 2, held
    assert refused.startswith("NO DATA") and "HTTP 401" in refused


def test_console_shows_a_coin_equity_to_8_places_and_a_stablecoin_equity_to_the_cent() -> None:
    web = Path(__file__).parents[2] / "src" / "deltakeeper" / "adapters" / "web"

    def serve(route: Any) -> None:  # the console's own files; no API behind them
        path = route.request.url.removeprefix("http://console.test/")
        file = web / (path.removeprefix("static/") if path else "index.html")
        if path.startswith("api/") or not file.is_file():
            route.fulfill(status=404, body="")
        else:
            route.fulfill(path=str(file))

    status = {"stablecoins": ["USDC", "USDT"],
              "margin": {"headroom": 0.5, "warn_headroom": 0.3, "critical_headroom": 0.15,
                         "liquidation_move": 0.4,
                         "by_settle": {"BTC": {"equity": "0.12345678", "headroom": 0.5},
                                       "USDT": {"equity": "1234.5678", "headroom": 0.5}}}}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("http://console.test/**", serve)
            page.goto("http://console.test/")
            page.wait_for_function("() => document.getElementById('state-banner').dataset.state === 'error'")
            page.evaluate("status => renderMargin(status)", status)
            margin = page.inner_text("#margin")
        finally:
            browser.close()
    assert "BTC: equity 0.12345678" in margin and "USDT: equity 1,234.57" in margin, margin
