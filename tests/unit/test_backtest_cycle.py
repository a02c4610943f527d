"""The backtest drives the live decision cycle (issue 12): a proxy hedge at a fixed or an EWMA beta, and
orders sliced over price events behind the one-order-in-flight gate, on three days of Bybit's BTC and ETH
5-minute history (../shared/data) and on the simulator's bundled SOL history."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from deltakeeper.backtest import BacktestSettings, load_dataset, run_backtest, run_dataset
from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo
from deltakeeper.sim.feeds import BUNDLED_EXCERPT

SHARED_5M = Path(__file__).parents[2].parent / "shared" / "data" / "bybit_linear_5m"
BARS = 864
"""Three days of 5-minute bars."""
BTC_PERP = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def btc_eth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not SHARED_5M.is_dir():
        pytest.skip(f"no {SHARED_5M}")
    folder = tmp_path_factory.mktemp("bars")
    files = {}
    for asset in ("BTC", "ETH"):
        lines = (SHARED_5M / f"{asset}USDT_5m.csv").read_text().splitlines()[: BARS + 1]
        files[asset] = folder / f"{asset}.csv"
        files[asset].write_text("\n".join(lines) + "\n")
    return files


def proxy_settings(beta: D | None) -> BacktestSettings:
    return replace(BacktestSettings(), hedges={"ETH": BTC_PERP}, betas={"ETH": beta})


def last_mid(path: Path) -> D:
    return D(path.read_text().splitlines()[-1].split(",")[4])


def hedge_ratio(result: dict[str, Any], files: dict[str, Path]) -> D:
    """The hedge's USD delta over the ETH held, at the last closes."""
    eth = result["assets"]["ETH"]
    hedge_usd = eth["final_hedge_coin"] * last_mid(files["BTC"])
    return -hedge_usd / (eth["final_holdings_coin"] * last_mid(files["ETH"]))


def test_a_proxy_hedge_at_a_fixed_beta_holds_the_asset_with_the_other_assets_perpetual(btc_eth):
    result = run_backtest(btc_eth, None, "static:100000", "band", proxy_settings(D("1.3")))

    assert list(result["assets"]) == ["ETH"]  # BTC's market is the hedge market only
    eth = result["assets"]["ETH"]
    assert eth["hedge"] == BTC_PERP
    assert eth["trades"] > 0 and eth["decisions"]["rebalance"] == eth["trades"]
    assert "beta_unknown" not in eth["decisions"]
    assert eth["final_hedge_coin"] < 0
    # held at 1.3 x the ETH exposure in USD, within the 1 % band (and a lot step of BTC)
    assert abs(hedge_ratio(result, btc_eth) - D("1.3")) < D("0.03")
    assert result["settings"]["DK_ASSETS__ETH__BETA"] == D("1.3")


def test_a_proxy_hedge_at_the_ewma_beta_waits_for_the_estimate_then_hedges_at_it(btc_eth):
    result = run_backtest(btc_eth, None, "static:100000", "band", proxy_settings(None))

    eth = result["assets"]["ETH"]
    assert eth["decisions"]["beta_unknown"] > 0  # the warm-up: no hedge on a few returns
    assert eth["decisions"]["rebalance"] > 0 and eth["final_hedge_coin"] < 0
    assert D("0.5") < hedge_ratio(result, btc_eth) < D(2)  # ETH on BTC: around 1
    assert result["settings"]["DK_ASSETS__ETH__BETA"] == "ewma"
    fixed = run_backtest(btc_eth, None, "static:100000", "band", proxy_settings(D(1)))
    assert result["trades"] != fixed["trades"]  # the estimate, not a ratio of 1


@pytest.fixture(scope="module")
def bundled_lp() -> Any:
    with resources.as_file(resources.files("deltakeeper.sim") / "data" / BUNDLED_EXCERPT) as bundled:
        return load_dataset({"SOL": bundled}, None, "lp", 1.0)


def test_orders_above_the_slice_size_go_in_slices_one_a_price_event_with_no_decision_meanwhile(bundled_lp):
    whole = run_dataset(bundled_lp, "band")
    sliced = run_dataset(bundled_lp, "band", replace(BacktestSettings(), slice_max_usd=D(500)))

    sol, whole_sol = sliced["assets"]["SOL"], whole["assets"]["SOL"]
    decided = sum(sol["decisions"].values())
    assert sol["trades"] > sol["decisions"]["rebalance"]  # more orders than decisions that traded
    assert decided < sum(whole_sol["decisions"].values())  # no decision while a slice waits its turn
    assert sliced["settings"]["DK_SLICE_MAX_USD"] == D(500)
    # the same hedging, spread over more orders, none larger than the slice size (and a lot step)
    whole_usd = whole_sol["traded_notional_usd"]
    assert abs(sol["traded_notional_usd"] - whole_usd) < whole_usd / 2
    assert sol["traded_notional_usd"] / sol["trades"] < D(500) + D(200)


@pytest.mark.parametrize(("policy", "ra"), [("band", 1e-4), ("cost-aware", 1e-4), ("cost-aware", 1e-8)])
def test_a_band_in_percent_of_gross_to_its_edge_trades_once_a_price_event(bundled_lp, policy, ra):
    """The decision after each order sees the fill (the cycle re-decides at once, on the same price): a
    trade that shrinks the hedge shrinks a band in percent of the gross exposure with it (the fixed band
    of 1 %; the cost-aware band when capped at its hard maximum, 1 % here, as at a risk aversion of 1e-8), and
    is sized to that band, so the decision after it finds the delta inside and trades nothing more."""
    from deltakeeper.backtest.replay import Replay

    cfg = replace(BacktestSettings(), default_band=Band(BandUnit.PCT, D(1)), rebalance_to=RebalanceTo.EDGE,
                  risk_aversion_per_usd=ra, max_deviation_pct=D(1))
    replay = Replay(bundled_lp, policy, cfg)
    result = replay.run()

    orders_at: dict[object, set[str | None]] = {}
    for fill in replay.fills:
        orders_at.setdefault(fill.ts, set()).add(fill.client_order_id)
    assert result["trades"] > 100
    assert max(len(orders) for orders in orders_at.values()) == 1
    assert result["assets"]["SOL"]["decisions"]["rebalance"] == result["trades"]
