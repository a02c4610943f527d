"""The SQL journal on real SQLite and PostgreSQL databases (see conftest.database_url)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError
from structlog.testing import capture_logs
from tests.integration.service_harness import until

from deltakeeper.adapters.journal import (
    SqlJournal,
    create_journal,
    normalise_url,
    take_trader_lock,
    upgrade,
)
from deltakeeper.adapters.journal.migrate import alembic_config
from deltakeeper.adapters.journal.models import fills, metadata, snapshots
from deltakeeper.domain.errors import ConfigError, ForeignOrder
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderRequest,
    OrderState,
    OrderStatus,
    Side,
    client_order_id,
)
from deltakeeper.domain.records import ControlState, DecisionRecord, OrderRecord

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BTC_PERP = "BTC/USDT:USDT"
ETH_PERP = "ETH/USDT:USDT"
JOURNAL_TABLES = {
    "decisions", "orders", "fills", "funding_payments", "snapshots", "control", "control_events",
}


@pytest.fixture
async def journal(database_url: str) -> AsyncIterator[SqlJournal]:
    upgrade(database_url)
    journal = create_journal(database_url)
    yield journal
    await journal.close()


def fill(trade_id: str, ts: datetime = T0, symbol: str = BTC_PERP, side: Side = Side.BUY,
         notional_usd: str = "100", amount: str = "0.001", price: str = "60000") -> Fill:
    return Fill(
        trade_id=trade_id, exchange_order_id=f"ex-{trade_id}", client_order_id="dk1a0", symbol=symbol,
        side=side, amount_contracts=Decimal(amount), price=Decimal(price), fee=Decimal("0.06"),
        fee_currency="USDT", ts=ts, notional_usd=Decimal(notional_usd),
    )


def payment(payment_id: str, ts: datetime = T0, symbol: str = BTC_PERP,
            amount: str = "-0.42") -> FundingPayment:
    return FundingPayment(
        payment_id=payment_id, symbol=symbol, amount=Decimal(amount), currency="USDT",
        rate=Decimal("0.0001"), position_contracts=Decimal("-0.5"), ts=ts,
    )


def decision(decision_id: int, ts: datetime = T0, asset: str = "BTC") -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id, ts=ts, asset=asset, delta_coin=Decimal("0.25"), delta_usd=Decimal("15000"),
        target_coin=Decimal(0), band_coin=Decimal("0.1"), price_usd=Decimal("60000"), reason="rebalance",
        trading_state="active", symbol=f"{asset}/USDT:USDT", side=Side.SELL,
        amount_contracts=Decimal("0.25"), est_cost_usd=Decimal("8.25"), detail="outside band",
    )


def pending_order(decision_id: int = 7, ts: datetime = T0, symbol: str = BTC_PERP) -> OrderRecord:
    request = OrderRequest(client_order_id=client_order_id(decision_id), symbol=symbol, side=Side.SELL,
                           amount_contracts=Decimal("0.25"))
    return OrderRecord.pending(request, decision_id=decision_id, ts=ts, reference_price=Decimal("60000"),
                               asset="BTC")


def exchange_state(client_id: str | None, status: OrderStatus, filled: str = "0", exchange_id: str = "X1",
                   ts: datetime = T0, average_price: str | None = None) -> OrderState:
    return OrderState(
        client_order_id=client_id, exchange_order_id=exchange_id, symbol=BTC_PERP, side=Side.SELL,
        amount_contracts=Decimal("0.25"), filled_contracts=Decimal(filled), status=status, ts=ts,
        average_price=None if average_price is None else Decimal(average_price),
    )


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_create_the_schema_from_empty_and_are_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)

    journal = create_journal(database_url)
    async with journal.engine.connect() as conn:
        tables = await conn.run_sync(_table_names)
        version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    await journal.close()
    assert tables == JOURNAL_TABLES | {"alembic_version"}
    assert version == "0002"


async def test_fills_journaled_before_the_kind_column_read_back_as_trades(database_url: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), "0001")
    journal = create_journal(database_url)
    try:
        async with journal.engine.begin() as conn:  # a row as revision 0001 stored it: no kind
            await conn.execute(fills.insert().values(
                trade_id="t1", exchange_order_id="ex-t1", client_order_id="dk1a0", symbol=BTC_PERP,
                side="buy", amount_contracts=Decimal("0.001"), price=Decimal(60_000), fee=Decimal("0.06"),
                fee_currency="USDT", notional_usd=Decimal(60), is_maker=False, ts=T0, recorded_at=T0))
    finally:
        await journal.close()
    upgrade(database_url)

    journal = create_journal(database_url)
    try:
        [row] = await journal.fills()
        await journal.record_fills([replace(fill("d1", notional_usd="5800"), client_order_id=None,
                                            delivery=True)])
        traded = await journal.traded_usd_since(T0)
    finally:
        await journal.close()
    assert (row.trade_id, row.kind, row.notional_usd) == ("t1", "trade", 60)
    assert traded == 60


async def test_migrated_schema_matches_the_models(journal: SqlJournal) -> None:
    async with journal.engine.connect() as conn:
        differences = await conn.run_sync(_schema_differences)
    assert differences == []


async def test_decimals_round_trip_exactly(journal: SqlJournal) -> None:
    tiny, large = Decimal("0.000016666666666667"), Decimal("123456789.123456789")
    await journal.record_fills([fill("t1", amount=str(tiny), price=str(large), notional_usd="2057.6131")])
    await journal.record_funding([payment("p1", amount="-0.000000000000000001")])

    [stored_fill] = await journal.list_fills()
    [stored_payment] = await journal.list_funding()
    assert (stored_fill["amount_contracts"], stored_fill["price"]) == (tiny, large)
    assert (str(stored_fill["amount_contracts"]), str(stored_fill["price"])) == (str(tiny), str(large))
    assert stored_fill["notional_usd"] == Decimal("2057.6131")
    assert stored_payment["amount"] == Decimal("-1E-18")


async def test_the_same_fills_twice_are_stored_once_and_counted_once(journal: SqlJournal) -> None:
    assert await journal.record_fills([fill("t1"), fill("t2")]) == 2
    assert await journal.record_fills([fill("t1"), fill("t2")]) == 0
    assert await journal.record_fills([fill("t2"), fill("t3"), fill("t3")]) == 1
    assert await journal.record_fills([fill("t1", symbol=ETH_PERP)]) == 1
    assert await journal.record_fills([]) == 0

    stored = await journal.list_fills()
    assert sorted((row["symbol"], row["trade_id"]) for row in stored) == [
        (BTC_PERP, "t1"), (BTC_PERP, "t2"), (BTC_PERP, "t3"), (ETH_PERP, "t1"),
    ]


async def test_the_same_funding_payments_twice_are_stored_once_and_counted_once(journal: SqlJournal) -> None:
    assert await journal.record_funding([payment("p1"), payment("p2")]) == 2
    assert await journal.record_funding([payment("p2"), payment("p3")]) == 1
    assert [row["payment_id"] for row in await journal.list_funding()] == ["p1", "p2", "p3"]


async def test_order_moves_from_pending_to_open_to_filled(journal: SqlJournal) -> None:
    order = pending_order()
    await journal.record_order(order)
    assert await journal.open_orders() == [order]

    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.OPEN,
                                              ts=T0 + timedelta(seconds=1)))
    [open_order] = await journal.open_orders()
    assert (open_order.status, open_order.exchange_order_id) == (OrderStatus.OPEN, "X1")

    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.FILLED, filled="0.25",
                                              average_price="59990.5", ts=T0 + timedelta(seconds=2)))
    assert await journal.open_orders() == []
    [row] = await journal.list_orders()
    assert row["status"] == "filled"
    assert row["filled_contracts"] == Decimal("0.25")
    assert row["average_price"] == Decimal("59990.5")
    assert row["exchange_order_id"] == "X1"
    assert row["decision_id"] == 7
    assert (row["created_ts"], row["updated_ts"]) == (T0, T0 + timedelta(seconds=2))


async def test_a_final_order_status_never_reverts(journal: SqlJournal) -> None:
    order = pending_order()
    await journal.record_order(order)
    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.FILLED, filled="0.25",
                                              average_price="60000"))

    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.OPEN))
    await journal.update_order(exchange_state(None, OrderStatus.PARTIALLY_FILLED, filled="0.1"))
    await journal.record_order(order)

    [row] = await journal.list_orders()
    assert (row["status"], row["filled_contracts"]) == ("filled", Decimal("0.25"))
    assert await journal.open_orders() == []


async def test_an_update_that_shrinks_the_filled_amount_is_stale(journal: SqlJournal) -> None:
    order = pending_order()
    await journal.record_order(order)
    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.PARTIALLY_FILLED,
                                              filled="0.1"))
    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.OPEN, filled="0"))

    [open_order] = await journal.open_orders()
    assert (open_order.status, open_order.filled_contracts) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.1"))


async def test_an_update_without_client_id_matches_by_exchange_order_id(journal: SqlJournal) -> None:
    order = pending_order()
    await journal.record_order(order)
    await journal.update_order(exchange_state(order.client_order_id, OrderStatus.OPEN, exchange_id="X9"))
    await journal.update_order(exchange_state(None, OrderStatus.CANCELED, exchange_id="X9"))

    [row] = await journal.list_orders()
    assert (row["client_order_id"], row["status"]) == (order.client_order_id, "canceled")


async def test_an_unknown_order_is_never_adopted_and_one_with_our_prefix_is_foreign(journal: SqlJournal
                                                                                  ) -> None:
    with pytest.raises(ForeignOrder, match="dk99a0 on BTC/USDT:USDT carries our client-id prefix"):
        await journal.update_order(exchange_state("dk99a0", OrderStatus.OPEN, exchange_id="X1"))
    await journal.update_order(exchange_state("manual-order", OrderStatus.OPEN, exchange_id="X2"))
    await journal.update_order(exchange_state(None, OrderStatus.OPEN, exchange_id="X3"))

    assert await journal.list_orders() == []
    await journal.record_order(pending_order(7))
    known = pending_order(7).client_order_id
    assert await journal.unknown_client_ids({known, "dk99a0"}) == {"dk99a0"}


async def test_record_order_replaces_a_live_order_by_client_id(journal: SqlJournal) -> None:
    order = pending_order()
    await journal.record_order(order)
    await journal.record_order(replace(order, status=OrderStatus.UNKNOWN, reject_reason="timeout"))

    [row] = await journal.list_orders()
    assert (row["status"], row["reject_reason"]) == ("unknown", "timeout")


async def test_listings_filter_by_time_symbol_side_and_asset_oldest_first(journal: SqlJournal) -> None:
    await journal.record_fills([
        fill("t3", ts=T0 + timedelta(hours=3), symbol=ETH_PERP),
        fill("t1", ts=T0 + timedelta(hours=1), side=Side.SELL),
        fill("t2", ts=T0 + timedelta(hours=2)),
        fill("t0", ts=T0),
    ])

    def ids(rows: list[dict[str, object]]) -> list[object]:
        return [row["trade_id"] for row in rows]

    assert ids(await journal.list_fills()) == ["t0", "t1", "t2", "t3"]
    assert ids(await journal.list_fills(since=T0 + timedelta(hours=1))) == ["t1", "t2", "t3"]
    assert ids(await journal.list_fills(until=T0 + timedelta(hours=2))) == ["t0", "t1"]
    assert ids(await journal.list_fills(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))) == [
        "t1", "t2",
    ]
    assert ids(await journal.list_fills(symbol=ETH_PERP)) == ["t3"]
    assert ids(await journal.list_fills(side="sell")) == ["t1"]
    assert ids(await journal.list_fills(asset="btc")) == ["t0", "t1", "t2"]
    assert ids(await journal.list_fills(limit=2, offset=1)) == ["t1", "t2"]


async def test_decisions_and_orders_filter_by_their_asset(journal: SqlJournal) -> None:
    await journal.record_decision(decision(2, ts=T0 + timedelta(minutes=1), asset="ETH"))
    await journal.record_decision(decision(1))
    await journal.record_decision(decision(1))
    await journal.record_order(pending_order(1))
    await journal.record_order(pending_order(2, symbol=ETH_PERP))

    assert [row["decision_id"] for row in await journal.list_decisions()] == [1, 2]
    [eth] = await journal.list_decisions(asset="ETH")
    assert (eth["decision_id"], eth["delta_usd"], eth["side"]) == (2, Decimal(15000), "sell")
    assert [row["decision_id"] for row in await journal.list_orders(asset="BTC")] == [1, 2]
    assert [row["symbol"] for row in await journal.list_orders(symbol=ETH_PERP)] == [ETH_PERP]


async def test_a_filter_the_table_cannot_apply_is_refused(journal: SqlJournal) -> None:
    with pytest.raises(ConfigError, match="side"):
        await journal.list_funding(side="buy")
    with pytest.raises(ConfigError, match="side"):
        await journal.list_fills(side="long")


async def test_control_state_round_trips_and_journals_each_change(journal: SqlJournal) -> None:
    assert await journal.control_state() == ControlState(halted=False)

    halt = ControlState(halted=True, reason="exchange maintenance", by="alice", ts=T0, extra={"ticket": "42"})
    await journal.set_control_state(halt)
    assert await journal.control_state() == halt

    await journal.set_control_state(ControlState(halted=False, reason="maintenance over", by="bob",
                                                 ts=T0 + timedelta(hours=1)))
    assert (await journal.control_state()).halted is False

    events = await journal.list_control_events()
    assert [(e["action"], e["by"], e["reason"], e["ts"]) for e in events] == [
        ("halt", "alice", "exchange maintenance", T0),
        ("resume", "bob", "maintenance over", T0 + timedelta(hours=1)),
    ]


async def test_traded_usd_since_sums_the_notional_of_fills_from_then_on(journal: SqlJournal) -> None:
    assert await journal.traded_usd_since(T0) == 0
    await journal.record_fills([
        fill("old", ts=T0 - timedelta(seconds=1), notional_usd="1000"),
        fill("a", ts=T0, notional_usd="100.10"),
        fill("b", ts=T0 + timedelta(hours=5), notional_usd="0.000000000000000001"),
    ])
    assert await journal.traded_usd_since(T0) == Decimal("100.100000000000000001")


async def test_traded_usd_since_leaves_out_liquidations_and_deliveries(journal: SqlJournal) -> None:
    closed_by_exchange = {"client_order_id": None, "exchange_order_id": "ex-own"}
    await journal.record_fills([
        fill("trade", notional_usd="100"),
        replace(fill("liquidated", notional_usd="2000"), liquidation=True, **closed_by_exchange),
        replace(fill("delivered", notional_usd="30000"), delivery=True, **closed_by_exchange),
    ])

    assert await journal.traded_usd_since(T0) == 100
    rows = await journal.fills()
    assert [(r.trade_id, r.kind) for r in rows] == [
        ("trade", "trade"), ("liquidated", "liquidation"), ("delivered", "delivery")]
    assert [r["kind"] for r in await journal.list_fills()] == ["trade", "liquidation", "delivery"]


async def test_last_fill_and_funding_times_are_the_newest_recorded(journal: SqlJournal) -> None:
    assert await journal.last_fill_ts() is None
    assert await journal.last_funding_ts() is None
    await journal.record_fills([fill("a", ts=T0 + timedelta(minutes=5)), fill("b", ts=T0)])
    await journal.record_funding([payment("p", ts=T0 + timedelta(hours=8))])
    assert await journal.last_fill_ts() == T0 + timedelta(minutes=5)
    assert await journal.last_funding_ts() == T0 + timedelta(hours=8)


async def test_timestamps_come_back_as_aware_utc(journal: SqlJournal) -> None:
    paris = timezone(timedelta(hours=2))
    await journal.record_fills([fill("t1", ts=datetime(2024, 3, 1, 14, 0, 0, 123456, tzinfo=paris))])
    [row] = await journal.list_fills()
    assert row["ts"] == datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert row["ts"].tzinfo is UTC
    assert row["recorded_at"].tzinfo is UTC
    assert await journal.list_fills(since=datetime(2024, 3, 1, 14, 0, tzinfo=paris)) == [row]


async def test_naive_timestamps_are_refused(journal: SqlJournal) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        await journal.record_fills([fill("t1", ts=datetime(2024, 3, 1, 12, 0))])


async def test_snapshots_store_one_row_per_asset(journal: SqlJournal) -> None:
    deltas = {
        "BTC": AssetDelta("BTC", Decimal("0.01"), Decimal("600"), Decimal("2.01")),
        "ETH": AssetDelta("ETH", Decimal("-0.5"), Decimal("-1500"), Decimal("10")),
    }
    await journal.record_snapshot(T0, deltas, "active")
    async with journal.engine.connect() as conn:
        rows = (await conn.execute(select(snapshots).order_by(snapshots.c.asset))).all()
    assert [(r.asset, r.delta_coin, r.gross_coin, r.trading_state, r.ts) for r in rows] == [
        ("BTC", Decimal("0.01"), Decimal("2.01"), "active", T0),
        ("ETH", Decimal("-0.5"), Decimal(10), "active", T0),
    ]


async def test_a_second_trader_lock_holder_waits_until_the_first_releases(database_url: str,
                                                                          tmp_path: Path) -> None:
    first = await take_trader_lock(database_url, tmp_path, poll_secs=0.05)
    with capture_logs() as logs:
        second = asyncio.create_task(take_trader_lock(database_url, tmp_path, poll_secs=0.05))
        await until(lambda: any(entry["event"] == "trader_lock_waiting" for entry in logs), 5, "a standby")
    assert not second.done()
    await first.release()
    lock = await second
    assert lock.held()
    await lock.release()


def test_database_urls_are_mapped_to_async_drivers() -> None:
    assert normalise_url("postgresql://u:p@db:5432/dk") == "postgresql+asyncpg://u:p@db:5432/dk"
    assert normalise_url("postgres://db/dk") == "postgresql+asyncpg://db/dk"
    assert normalise_url("postgresql+asyncpg://db/dk") == "postgresql+asyncpg://db/dk"
    assert normalise_url("sqlite:///data/deltakeeper.db") == "sqlite+aiosqlite:///data/deltakeeper.db"
    assert normalise_url("sqlite+aiosqlite:////abs/dk.db") == "sqlite+aiosqlite:////abs/dk.db"


def test_an_unknown_database_scheme_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="DK_DATABASE_URL") as error:
        normalise_url("mysql://root:secret@db/dk")
    assert "secret" not in str(error.value)


async def test_a_decision_and_the_order_it_sends_are_recorded_together(journal: SqlJournal) -> None:
    order = pending_order(decision_id=11)
    await journal.record_decision(decision(11), order)
    await journal.record_decision(decision(11), order)  # the same again: stored once

    decisions = await journal.list_decisions()
    orders = await journal.list_orders()
    assert [d["decision_id"] for d in decisions] == [11]
    assert [(o["client_order_id"], o["decision_id"], o["status"]) for o in orders] == [
        (order.client_order_id, 11, "pending")
    ]


async def test_a_failed_order_write_takes_its_decision_back_with_it(journal: SqlJournal) -> None:
    naive = replace(pending_order(decision_id=12), created_ts=datetime(2026, 1, 1))  # refused: no time zone
    with pytest.raises(StatementError):
        await journal.record_decision(decision(12), naive)
    assert await journal.list_decisions() == [] and await journal.list_orders() == []


async def test_an_order_the_database_refuses_takes_its_decision_back_with_it(journal: SqlJournal) -> None:
    refused = replace(pending_order(decision_id=13), symbol=None)  # NOT NULL: refused by the database itself
    with pytest.raises(DBAPIError):
        await journal.record_decision(decision(13), refused)
    assert await journal.list_decisions() == [] and await journal.list_orders() == []

    await journal.record_decision(decision(13), pending_order(decision_id=13))  # and the journal goes on
    assert [d["decision_id"] for d in await journal.list_decisions()] == [13]
    assert [o["decision_id"] for o in await journal.list_orders()] == [13]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_standby_waits_through_an_unreachable_database(database_url: str, tmp_path: Path) -> None:
    closed_port = "postgresql://postgres@127.0.0.1:1/none"
    with capture_logs() as logs:
        standby = asyncio.create_task(take_trader_lock(closed_port, tmp_path, poll_secs=0.05))
        await until(lambda: any(entry["event"] == "trader_lock_unreachable" for entry in logs), 5, "a retry")
    assert not standby.done()
    standby.cancel()
    with pytest.raises(asyncio.CancelledError):
        await standby
