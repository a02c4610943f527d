"""A quarterly hedge in the backtest (`DK_ASSETS__SOL__HEDGE=quarterly`): the replay drives the live decision
cycle, which rolls the hedge into the next quarterly before expiry, over the bundled SOL history moved to
span the March 2026 expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from importlib import resources
from pathlib import Path

import pytest

from deltakeeper.backtest import BacktestSettings, load_dataset
from deltakeeper.backtest.dataset import Dataset
from deltakeeper.backtest.replay import ACCOUNT, Replay
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.risk import DEFAULT_LIMITS
from deltakeeper.sim.feeds import BUNDLED_EXCERPT

SHIFT = timedelta(days=31)
"""The bundled 5 January - 5 March 2026 history, moved to 5 February - 5 April: across the 27 March expiry."""
MAR, JUN = "SOL/USDT:USDT-260327", "SOL/USDT:USDT-260626"
ROLLED_AT = datetime(2026, 3, 27, 8, tzinfo=UTC) - timedelta(hours=48)
HELD_SOL = D(1000)


@pytest.fixture(scope="module")
def moved_sol(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    with resources.as_file(resources.files("deltakeeper.sim") / "data" / BUNDLED_EXCERPT) as bundled:
        header, *rows = Path(bundled).read_text().splitlines()
    out = tmp_path_factory.mktemp("bars") / "SOL.csv"
    moved = []
    for row in rows:
        ts, rest = row.split(",", 1)
        moved.append(f"{(datetime.fromisoformat(ts) + SHIFT).isoformat()},{rest}")
    out.write_text("\n".join([header, *moved]) + "\n")
    return load_dataset({"SOL": out}, None, f"static:{HELD_SOL * 135}", 1.0)


def quarterly(**overrides: object) -> BacktestSettings:
    return replace(BacktestSettings(), hedges={"SOL": "quarterly"}, external_coin={"SOL": HELD_SOL},
                   **overrides)  # type: ignore[arg-type]


def test_the_quarterly_hedge_is_rolled_once_before_expiry_and_nothing_is_settled(moved_sol: Dataset) -> None:
    replay = Replay(moved_sol, "band", quarterly())
    result = replay.run()
    sol = result["assets"]["SOL"]

    assert sol["hedge"] == MAR  # the nearest quarterly at the start
    assert sol["decisions"]["roll"] == 1
    assert result["settings"]["DK_ROLL_WINDOW_SECS"] == 48 * 3600
    assert replay.service.policies["SOL"].hedge_symbol == JUN
    # The roll's two legs at the first price event inside the 48-hour window: March closed, June opened.
    legs = sorted({(f.symbol, f.side.value, f.ts) for f in replay.fills if not f.client_order_id.startswith(
        "dkopen")})
    assert legs == [(MAR, "buy", ROLLED_AT), (JUN, "sell", ROLLED_AT)]
    assert [(p.symbol, p.contracts) for p in replay.engine.positions(ACCOUNT)] == [(JUN, -HELD_SOL)]
    assert sol["final_hedge_coin"] == -HELD_SOL
    assert sol["max_abs_delta_usd"] == 0  # the roll moved the hedge over whole: flat at every sample
    assert 0 < sol["slippage_usd"] < sol["fees_usd"]  # against each quarterly's own mid, not the perpetual's
    # Marked to the quarterlies' own mids: the short hedge earns the basis as it decays (8% a year on the
    # notional over the two months, less June's basis sold at the roll and still in the price at the end).
    carry_usd = sol["hedge_pnl_usd"] + sol["exposure_pnl_usd"]
    assert 0 < carry_usd < D("0.08") * HELD_SOL * 140 * 60 / 365


def test_a_hedge_larger_than_one_order_may_be_is_rolled_in_parts_before_expiry(moved_sol: Dataset) -> None:
    limits = replace(DEFAULT_LIMITS, max_order_usd=D(50_000))  # the hedge is about 90,000 USD at the roll
    replay = Replay(moved_sol, "band", quarterly(limits=limits))
    sol = replay.run()["assets"]["SOL"]

    assert "max_order" not in sol["decisions"]  # never refused: each part within the limit
    assert [(p.symbol, p.contracts) for p in replay.engine.positions(ACCOUNT)] == [(JUN, -HELD_SOL)]
    closes = [f for f in replay.fills if f.symbol == MAR and f.client_order_id != "dkopen1"]
    opens = [f for f in replay.fills if f.symbol == JUN]
    assert len({f.client_order_id for f in closes}) == 2  # two roll decisions, one after the other
    assert {f.ts for f in closes + opens} == {ROLLED_AT}
    assert sum(f.amount_contracts for f in closes) == sum(f.amount_contracts for f in opens) == HELD_SOL
    assert all(f.amount_contracts * f.price <= 50_000 for f in replay.fills if f.client_order_id != "dkopen1")


def test_a_hedge_not_rolled_in_time_is_settled_at_expiry_then_hedged_afresh_on_the_next(
        moved_sol: Dataset) -> None:
    replay = Replay(moved_sol, "band", quarterly(roll_window_secs=1))  # no price event inside the window
    sol = replay.run()["assets"]["SOL"]

    assert "roll" not in sol["decisions"] and sol["decisions"]["rebalance"] == 1
    assert replay.service.policies["SOL"].hedge_symbol == JUN
    # to the edge of the default 1% band, as any rebalance (the roll moves the whole hedge)
    held = [(p.symbol, p.contracts) for p in replay.engine.positions(ACCOUNT)]
    assert held == [(JUN, -HELD_SOL * D("0.99"))]
    assert sol["final_hedge_coin"] == -HELD_SOL * D("0.99")  # March's settled position counted out
    (hedged_afresh,) = {f.ts for f in replay.fills if f.symbol == JUN}
    assert hedged_afresh == ROLLED_AT + timedelta(hours=48)  # at the settling price event
    # March's delivery fill at expiry is no trade: the one trade is June's rebalance
    assert (sol["trades"], sol["traded_notional_usd"]) == (1, sum(f.notional_usd for f in replay.fills
                                                                  if f.symbol == JUN))


def test_an_unknown_hedge_name_is_refused(moved_sol: Dataset) -> None:
    with pytest.raises(ConfigError, match="DK_ASSETS__SOL__HEDGE"):
        Replay(moved_sol, "band", replace(BacktestSettings(), hedges={"SOL": "quarterlies"}))
