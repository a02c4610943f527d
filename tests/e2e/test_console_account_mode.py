"""The console's margin panel shows the exchange's own headroom (1 - its maintenance margin ratio) and the
account's margin mode beside the bot's estimate, and `unknown` where the exchange's figure is (issue 13):
Debian's chromium through Playwright, on the console's own files with a given status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, sync_api

WEB = Path(__file__).parents[2] / "src" / "deltakeeper" / "adapters" / "web"


def margin_panel(venues: list[dict[str, Any]]) -> list[str]:
    def serve(route: Any) -> None:  # the console's own files; no API behind them
        path = route.request.url.removeprefix("http://console.test/")
        file = WEB / (path.removeprefix("static/") if path else "index.html")
        if path.startswith("api/") or not file.is_file():
            route.fulfill(status=404, body="")
        else:
            route.fulfill(path=str(file))

    panels = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("http://console.test/**", serve)
            page.goto("http://console.test/")
            page.wait_for_function("() => document.getElementById('state-banner').dataset.state === 'error'")
            for venue in venues:
                status = {"stablecoins": ["USDT"],
                          "margin": {"headroom": 0.5, "warn_headroom": 0.3, "critical_headroom": 0.15,
                                     "liquidation_move": 0.4, "venue": venue,
                                     "by_settle": {"USDT": {"equity": "1234.5678", "headroom": 0.5}}}}
                page.evaluate("status => renderMargin(status)", status)
                panels.append(page.inner_text("#margin"))
        finally:
            browser.close()
    return panels


def test_the_margin_panel_shows_the_exchange_s_headroom_and_mode_beside_the_estimate() -> None:
    known, unknown = margin_panel([
        {"mode": "portfolio", "maintenance_ratio": 0.025, "ratio_source": "accountMMRate"},
        {"mode": "unknown", "maintenance_ratio": None, "ratio_source": ""},
    ])

    assert "exchange's headroom (portfolio account)\t97.5%" in known, known
    assert "account headroom\t50.0%" in known
    assert "exchange's headroom (unknown account)\tunknown" in unknown, unknown
