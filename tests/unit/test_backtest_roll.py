"""A quarterly hedge rolled before expiry over the bundled SOL history (moved to span the March 2026
expiry)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from deltakeeper.backtest.roll import RollEvent, replay_quarterly_hedge
from deltakeeper.sim.feeds import bundled_bars

START = datetime(2026, 2, 5, tzinfo=UTC)
"""The 60 days of bundled history replayed from here run to 6 April: across the 27 March expiry."""
MAR, JUN = "SOL/USDT:USDT-260327", "SOL/USDT:USDT-260626"


def test_the_hedge_is_rolled_48_hours_before_expiry_and_never_settled() -> None:
    report = replay_quarterly_hedge(bundled_bars(), holding_coin=D(1000), start=START)
    assert report.rolls == (RollEvent(datetime(2026, 3, 25, 8, tzinfo=UTC), MAR, JUN, D(-1000)),)
    assert report.settled_unrolled == ()
    assert report.final_positions == ((JUN, D(-1000)),)
    assert report.max_abs_delta_coin == 0  # linear contract for contract: flat at every tick
    assert report.fees_usd > 0


def test_without_a_roll_window_the_exchange_settles_the_hedge_at_expiry() -> None:
    report = replay_quarterly_hedge(bundled_bars(), holding_coin=D(1000), start=START, roll_window_secs=0)
    assert report.rolls == ()
    assert report.settled_unrolled == (MAR,)
    assert report.final_positions == ((JUN, D(-1000)),)  # hedged afresh on the next quarterly
