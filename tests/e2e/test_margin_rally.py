"""Issue 6's end-to-end test: a spot-and-perpetual hedge on the simulated exchange through a rally
(`DK_SIM_SCENARIO=rally`: 1,000 SOL and 11,000 USDT, the price calm for two simulated hours, up 10% in
one, then creeping up), run as a user runs it (`deltakeeper run`), until the margin headroom warning
fires and the trading state changes to reduce_only, with the journal and the alerts (real apprise
posting JSON to a local receiver) recording it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.alert_receiver import Receiver, alert_receiver
from tests.e2e.cli_helpers import clean_env, deltakeeper, journals


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with alert_receiver() as recv:
        yield recv


async def test_a_rally_fires_the_margin_warning_and_turns_trading_reduce_only_in_journal_and_alerts(
    data_dir: Path, receiver: Receiver
) -> None:
    # 1800x: 14 wall seconds are 7 simulated hours; the short leg's margin runs out about 5 hours in. (A
    # faster clock would leave too little of the two calm hours to a start-up slowed by a loaded machine.)
    # A margin check every 0.25 wall seconds is one every 7.5 simulated minutes.
    env = clean_env(
        data_dir,
        DK_SIM_SCENARIO="rally",
        DK_SIM_SPEED="1800",
        DK_RECOMPUTE_SECS="0.25",
        DK_ALERT_URLS=receiver.url,
        DK_ALERT_LEVEL="warning",
    )
    result = await asyncio.to_thread(deltakeeper, "run", "--for", "14s", env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""

    # The alerts: the warning below DK_MARGIN_WARN_HEADROOM_PCT, then the state change to reduce_only.
    events = receiver.events()
    assert "margin_headroom_low" in events, events
    assert any("-> reduce_only (margin_low)" in m for m in receiver.messages("trading_state_changed")), events
    assert "below 35%" in receiver.messages("margin_headroom_low")[0]

    # The journal: the hedge at the start, the margin_low decision in reduce_only, then decisions in
    # reduce_only.
    decision_rows, fill_rows = journals(env, "decisions", "fills")
    decisions = [d for d in decision_rows if d["asset"] == "SOL"]
    reasons = [d["reason"] for d in decisions]
    assert reasons[0] == "rebalance" and decisions[0]["side"] == "sell"
    assert decisions[0]["trading_state"] == "active"
    low = reasons.index("margin_low")
    assert decisions[low]["trading_state"] == "reduce_only"
    assert "below DK_MARGIN_CRITICAL_HEADROOM_PCT" in decisions[low]["detail"]
    assert all(d["trading_state"] == "active" for d in decisions[:low])
    assert Decimal(decisions[low]["price_usd"]) > Decimal(109)  # after the 10% climb
    assert any(d["trading_state"] == "reduce_only" for d in decisions[low + 1 :])

    # The creep carries the price past the short leg's liquidation price within the run.
    liquidation = decisions[reasons.index("liquidation")]
    assert reasons.index("liquidation") > low
    fills = {f["trade_id"]: f for f in fill_rows}
    trade_id = liquidation["detail"].split(":", 1)[0].removeprefix("trade ")
    assert fills[trade_id]["client_order_id"] is None and fills[trade_id]["side"] == "buy"
    assert any(trade_id in m for m in receiver.messages("liquidation_fill"))
