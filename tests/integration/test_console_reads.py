"""The console's journal reads (adapters.journal.console) on a real SQLite journal, and on PostgreSQL
when DK_TEST_POSTGRES_URL is set; and /api/status of a running bot (the simulated exchange) rounded for
reading."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.service_harness import journal_for, make_settings, until
from tests.integration.test_console_load import serving

from deltakeeper.adapters.journal import create_journal, upgrade
from deltakeeper.adapters.journal.console import ConsoleReads
from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.domain.orders import Fill, FundingPayment, Side
from deltakeeper.domain.records import DecisionRecord

T0 = datetime(2026, 3, 4, tzinfo=UTC)


@pytest.fixture
async def journal(database_url: str) -> AsyncIterator[SqlJournal]:
    upgrade(database_url)
    journal = create_journal(database_url)
    try:
        yield journal
    finally:
        await journal.close()


def fill(i: int, fee: str, currency: str, ts: datetime) -> Fill:
    return Fill(f"t{i}", f"o{i}", f"c{i}", "SOL/USDT:USDT", Side.BUY, Decimal(1), Decimal(150), Decimal(fee),
                currency, ts, Decimal(150))


def decision(i: int, asset: str) -> DecisionRecord:
    return DecisionRecord(decision_id=i, ts=T0 + timedelta(minutes=i), asset=asset, delta_coin=Decimal(i),
                          delta_usd=Decimal(i), target_coin=Decimal(0), band_coin=Decimal(1),
                          price_usd=Decimal(150), reason="inside_band", trading_state="active")


async def test_recent_rows_are_the_newest_oldest_first_and_incremental_after_a_row(
    journal: SqlJournal,
) -> None:
    for i in range(1, 11):
        await journal.record_decision(decision(i, "SOL" if i % 2 else "ETH"))
    reads = ConsoleReads(journal)

    newest = await reads.recent("decisions", 3)
    assert [r["decision_id"] for r in newest] == [8, 9, 10]
    after = await reads.recent("decisions", 100, after_id=newest[0]["id"])
    assert [r["decision_id"] for r in after] == [9, 10]
    assert await reads.recent("decisions", 100, after_id=newest[-1]["id"]) == []
    sol = await reads.recent("decisions", 2, asset="sol")
    assert [(r["decision_id"], r["asset"]) for r in sol] == [(7, "SOL"), (9, "SOL")]
    with pytest.raises(ValueError, match="no asset filter for fills"):
        await reads.recent("fills", 2, asset="SOL")


async def test_paging_after_a_row_with_a_small_limit_reads_every_newer_row_oldest_first(
    journal: SqlJournal,
) -> None:
    for i in range(1, 11):
        await journal.record_decision(decision(i, "SOL"))
    reads = ConsoleReads(journal)
    got: list[int] = []
    last_id = (await reads.recent("decisions", 10))[0]["id"]  # the page has seen only row 1
    while page := await reads.recent("decisions", 3, after_id=last_id):
        got += [r["decision_id"] for r in page]
        last_id = page[-1]["id"]
    assert got == list(range(2, 11))


async def test_costs_are_summed_per_currency_from_a_time_on_and_traded_volume_counts_trades_only(
    journal: SqlJournal,
) -> None:
    await journal.record_fills([
        fill(1, "0.5", "USDT", T0 - timedelta(seconds=1)),  # the day before: not counted
        fill(2, "0.25", "USDT", T0),
        fill(3, "0.125", "USDT", T0 + timedelta(hours=1)),
        fill(4, "0.00001", "BTC", T0 + timedelta(hours=2)),
        replace(fill(5, "0.0625", "USDT", T0 + timedelta(hours=3)), client_order_id=None, liquidation=True),
        replace(fill(6, "0", "USDT", T0 + timedelta(hours=4)), client_order_id=None, delivery=True),
    ])
    await journal.record_funding([
        FundingPayment("p1", "SOL/USDT:USDT", Decimal("-1.5"), "USDT", Decimal("0.0001"), Decimal(1), T0),
        FundingPayment("p2", "SOL/USDT:USDT", Decimal("0.75"), "USDT", Decimal("0.0001"), Decimal(1),
                       T0 + timedelta(hours=8)),
    ])
    costs = await ConsoleReads(journal).costs_since(T0)
    assert costs["fills"] == 3  # trades only: the exchange's liquidation and delivery are not trading
    assert costs["traded_usd"] == Decimal(450)
    assert {c: (v["count"], round(v["amount"], 10)) for c, v in costs["fees"].items()} == {
        "USDT": (4, Decimal("0.4375")), "BTC": (1, Decimal("0.00001")),  # the fees of every fill
    }
    assert {c: (v["count"], round(v["amount"], 10)) for c, v in costs["funding"].items()} == {
        "USDT": (2, Decimal("-0.75")),
    }
    empty = await ConsoleReads(journal).costs_since(T0 + timedelta(days=1))
    assert empty == {"fills": 0, "traded_usd": Decimal(0), "fees": {}, "funding": {}}


DECIMALS = re.compile(r"^-?\d+(?:\.(\d+))?$")


def places(value: Any) -> int:
    """Decimal places of a money string."""
    match = DECIMALS.match(value)
    assert match, value
    return len(match.group(1) or "")


async def test_status_rounds_usd_to_cents_coins_to_8_places_and_ratios_to_4(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal, serving(settings, journal) as (runner, base):
        service = runner.service
        await until(lambda: service.state.account is not None and bool(service.state.account.positions)
                    and bool(service.decisions.last), 15, "a decision and a position in the account")
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/status") as response:
            status = await response.json()
    sol = status["assets"]["SOL"]
    assert places(sol["delta_usd"]) <= 2 and places(status["traded_today_usd"]) <= 2
    assert all(places(sol[k]) <= 8 for k in ("delta_coin", "target_coin", "band_coin"))
    assert places(sol["position_contracts"]) <= 1  # the simulator's SOL lot step is 0.1
    assert sol["deviation"] is None or sol["deviation"] == round(sol["deviation"], 4)
    [position] = status["positions"]
    assert position["symbol"] == "SOL/USDT:USDT" and places(position["unrealised_pnl_usd"]) <= 2
    assert places(position["entry_price"]) <= 8 and places(position["unrealised_pnl"]) <= 8
    assert status["hedge_unrealised_pnl_usd"] == position["unrealised_pnl_usd"]
    margin = status["margin"]
    assert margin["headroom"] == round(margin["headroom"], 4)
    for settle in margin["by_settle"].values():
        assert places(settle["equity"]) <= 8 and settle["headroom"] == round(settle["headroom"], 4)
    assert all(isinstance(s["stale"], bool) for s in status["streams"].values())
