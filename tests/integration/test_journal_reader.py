"""The journal's read side (ports.JournalReader) on real SQLite and PostgreSQL: typed rows, the latest
snapshot and decision per asset, control events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from tests.integration.test_journal import (
    BTC_PERP,
    ETH_PERP,
    T0,
    decision,
    fill,
    journal,  # noqa: F401  (the fixture)
    payment,
    pending_order,
)

from deltakeeper.adapters.journal import SqlJournal, SqlJournalReader, open_reader
from deltakeeper.adapters.journal.models import fills
from deltakeeper.app.daily_summary import SummaryReader, summarize
from deltakeeper.app.watch import SUMMARY_WINDOW
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.journal_rows import (
    ControlEventRow,
    DecisionRow,
    FillRow,
    FundingRow,
    JournalQuery,
    OrderRow,
    row_dict,
)
from deltakeeper.domain.orders import Side
from deltakeeper.domain.records import ControlState
from deltakeeper.domain.usd import to_usd
from deltakeeper.ports import JournalReader

HOUR = timedelta(hours=1)


@pytest.fixture
async def reader(journal: SqlJournal, database_url: str) -> AsyncIterator[SqlJournalReader]:  # noqa: F811
    reader = open_reader(database_url)
    yield reader
    await reader.close()


async def test_rows_come_back_typed_with_every_column(journal: SqlJournal, reader: JournalReader) -> None:  # noqa: F811
    await journal.record_fills([fill("t1", ts=T0, side=Side.SELL, notional_usd="60.5", price="60500.25")])
    await journal.record_funding([payment("p1", ts=T0 + HOUR, amount="-0.42")])
    await journal.record_decision(decision(7, ts=T0), pending_order(7, ts=T0))

    [fill_row] = await reader.fills()
    assert isinstance(fill_row, FillRow)
    assert (fill_row.trade_id, fill_row.side, fill_row.price, fill_row.notional_usd, fill_row.ts) == (
        "t1", "sell", Decimal("60500.25"), Decimal("60.5"), T0)
    assert fill_row.ts.utcoffset() == timedelta(0) and fill_row.recorded_at.utcoffset() == timedelta(0)
    [funding_row] = await reader.funding()
    assert isinstance(funding_row, FundingRow) and funding_row.amount == Decimal("-0.42")
    [order_row] = await reader.orders()
    assert isinstance(order_row, OrderRow)
    assert (order_row.client_order_id, order_row.status, order_row.decision_id, order_row.asset) == (
        pending_order(7).client_order_id, "pending", 7, "BTC")
    [decision_row] = await reader.decisions()
    assert isinstance(decision_row, DecisionRow)
    assert (decision_row.decision_id, decision_row.est_cost_usd, decision_row.side) == (
        7, Decimal("8.25"), "sell")


async def test_typed_rows_and_the_dict_listings_are_the_same_rows(journal: SqlJournal,  # noqa: F811
                                                                   reader: JournalReader) -> None:
    await journal.record_fills([fill(f"t{i}", ts=T0 + i * HOUR, symbol=(BTC_PERP, ETH_PERP)[i % 2])
                                for i in range(5)])
    query = JournalQuery(since=T0 + HOUR, until=T0 + 4 * HOUR, asset="btc")
    rows = await reader.fills(query)
    assert [row.trade_id for row in rows] == ["t2"]
    assert [row_dict(row) for row in rows] == await journal.list_fills(since=T0 + HOUR, until=T0 + 4 * HOUR,
                                                                       asset="btc")
    assert [row.trade_id for row in await reader.fills(JournalQuery(limit=2, offset=1))] == ["t1", "t2"]
    assert list(row_dict(rows[0])) == [column.name for column in fills.columns]


async def test_a_filter_the_rows_cannot_take_is_refused(reader: JournalReader) -> None:
    with pytest.raises(ConfigError, match="side"):
        await reader.funding(JournalQuery(side="buy"))
    with pytest.raises(ConfigError, match="buy or sell"):
        await reader.fills(JournalQuery(side="long"))


async def test_latest_snapshot_and_decision_per_asset(journal: SqlJournal, reader: JournalReader) -> None:  # noqa: F811
    for hours, state in ((0, "active"), (1, "reduce_only")):
        deltas = {asset: AssetDelta(asset, Decimal(hours + 1), Decimal(100 * (hours + 1)), Decimal(5))
                  for asset in ("BTC", "ETH")}
        await journal.record_snapshot(T0 + hours * HOUR, deltas, state)
    for decision_id, hours, asset in ((1, 0, "BTC"), (2, 1, "ETH"), (3, 2, "BTC"), (4, 3, "ETH")):
        await journal.record_decision(decision(decision_id, ts=T0 + hours * HOUR, asset=asset))

    snapshots = await reader.latest_snapshots()
    assert [(s.asset, s.delta_coin, s.trading_state) for s in snapshots] == [
        ("BTC", Decimal(2), "reduce_only"), ("ETH", Decimal(2), "reduce_only")]
    assert [(d.asset, d.decision_id) for d in await reader.latest_decisions()] == [("BTC", 3), ("ETH", 4)]
    before = await reader.latest_decisions(before=T0 + 2 * HOUR)
    assert [(d.asset, d.decision_id) for d in before] == [("BTC", 1), ("ETH", 2)]
    assert [d.decision_id for d in await reader.latest_decisions(before=T0 + 3 * HOUR, asset="eth")] == [2]
    assert await reader.latest_decisions(before=T0) == []


async def test_a_cancel_all_request_is_journaled_beside_halts_and_resumes(journal: SqlJournal,  # noqa: F811
                                                                          reader: JournalReader) -> None:
    await journal.set_control_state(ControlState(halted=True, reason="maintenance", by="ops", ts=T0))
    await journal.record_control_event("cancel-all", "ops", "clean the book", T0 + HOUR)
    await journal.set_control_state(ControlState(halted=False, reason="done", by="ops", ts=T0 + 2 * HOUR))

    events = await reader.control_events()
    assert all(isinstance(event, ControlEventRow) for event in events)
    assert [(e.action, e.by, e.reason, e.ts) for e in events] == [
        ("halt", "ops", "maintenance", T0), ("cancel-all", "ops", "clean the book", T0 + HOUR),
        ("resume", "ops", "done", T0 + 2 * HOUR)]
    assert [e.action for e in await reader.control_events(JournalQuery(since=T0 + HOUR))] == [
        "cancel-all", "resume"]
    assert (await reader.control_state()).halted is False


async def test_the_daily_summary_of_the_journals_rows_counts_trades_only(journal: SqlJournal,  # noqa: F811
                                                                        reader: SummaryReader) -> None:
    closed = {"client_order_id": None, "exchange_order_id": "ex-own"}  # by the exchange
    until = T0 + 3 * HOUR
    await journal.record_fills([
        fill("before", ts=until - SUMMARY_WINDOW - HOUR, notional_usd="5000"),
        fill("trade", ts=T0, notional_usd="100"),
        replace(fill("liquidated", ts=T0 + HOUR, notional_usd="2000"), liquidation=True, **closed),
        replace(fill("delivered", ts=T0 + 2 * HOUR, notional_usd="30000"), delivery=True, **closed),
        fill("at-the-end", ts=until, notional_usd="7"),
    ])
    await journal.record_funding([payment("p1", ts=T0, amount="1.5")])
    since = until - SUMMARY_WINDOW
    window = JournalQuery(since=since, until=until)

    summary = summarize(since, until, await reader.fills(window), await reader.funding(window),
                        await reader.decisions(window), lambda amount, coin: to_usd(amount, coin, {}.get))

    assert (summary.trades, summary.traded_usd) == (1, Decimal(100))
    assert summary.fees_usd == 3 * Decimal("0.06") and summary.funding_usd == Decimal("1.5")
