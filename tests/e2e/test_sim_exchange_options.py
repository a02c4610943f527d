"""`deltakeeper sim-exchange --option-iv` in a subprocess: the emulator lists Bybit's USDC options, their
tickers carry greeks at that implied vol; without the flag it lists none."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_fault_proxy_cli import call, listening

OPTIONS = "/v5/market/instruments-info?category=option&baseCoin=BTC"


def test_sim_exchange_lists_usdc_options_with_greeks_at_the_implied_vol_it_is_given(tmp_path: Path) -> None:
    with listening(["sim-exchange", "--port", "0", "--option-iv", "0.6"], tmp_path, "options") as url:
        status, listing = call(url + OPTIONS)
        symbol = listing["result"]["list"][0]["symbol"]
        ticker = call(f"{url}/v5/market/tickers?category=option&symbol={symbol}")[1]["result"]["list"][0]
    with listening(["sim-exchange", "--port", "0"], tmp_path, "plain") as url:
        plain = call(url + OPTIONS)[1]

    assert status == 200 and len(listing["result"]["list"]) == 20  # 5 strikes, calls and puts, 2 expiries
    assert {row["settleCoin"] for row in listing["result"]["list"]} == {"USDC"}
    assert ticker["markIv"] == "0.6" and ticker["delta"] != ""
    assert plain["result"]["list"] == []
