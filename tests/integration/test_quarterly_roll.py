"""A quarterly hedge rolled before expiry on the simulated exchange, journaled as one decision with both
legs on a real journal (SQLite, and PostgreSQL where configured)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from itertools import count

import pytest

from deltakeeper.adapters.journal import SqlJournal, create_journal, upgrade
from deltakeeper.app.roll import RollOrders, RollSettings, due_rolls, journal_roll
from deltakeeper.domain.orders import OrderRequest, OrderStatus, Quote, Side, client_order_id
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import synthetic_feed
from deltakeeper.sim.futures import with_future_quotes
from deltakeeper.sim.markets import ASSETS, default_instruments, future_instruments

START = datetime(2026, 12, 20, 0, 0, tzinfo=UTC)
EXPIRY = datetime(2026, 12, 25, 8, 0, tzinfo=UTC)
DEC, MAR = "BTC/USDT:USDT-261225", "BTC/USDT:USDT-270326"
ACCOUNT = "fund"


@pytest.fixture
async def journal(database_url: str) -> AsyncIterator[SqlJournal]:
    upgrade(database_url)
    journal = create_journal(database_url)
    yield journal
    await journal.close()


def btc_feed() -> Iterator[tuple[datetime, list[Quote]]]:
    """BTC quoted every 10 minutes from 20 December to 26 December, the quarterlies priced off spot."""
    feed = synthetic_feed(ASSETS["BTC"], start=START, price=60_000.0, vol_annual=0.5, tick_secs=600, seed=4)
    for ts, quotes in with_future_quotes(feed, future_instruments(START)):
        if ts > EXPIRY + timedelta(days=1):
            return
        yield ts, quotes


async def test_a_short_quarterly_hedge_is_rolled_inside_the_window_and_never_settled(
        journal: SqlJournal) -> None:
    engine = SimEngine({**default_instruments(), **future_instruments(START)}, seed=5)
    engine.open_account(ACCOUNT, {"BTC": D(1), "USDT": D(20_000)})
    decision_ids = count(1)
    settings = RollSettings(roll_window_secs=48 * 3600, stale_secs=60)
    rolls: list[tuple[datetime, RollOrders]] = []
    for ts, quotes in btc_feed():
        for quote in quotes:
            engine.on_quote(quote)
        if ts == START:  # the hedge: 1 BTC short on the December quarterly
            engine.place_order(ACCOUNT, OrderRequest("hedge", DEC, Side.SELL, D(1)), ts)
        due = due_rolls(engine.positions(ACCOUNT), engine.instruments,
                        {s: q for s in engine.instruments if (q := engine.quote(s)) is not None}, ts,
                        lambda: next(decision_ids), settings)
        for roll in due:
            await journal_roll(journal, roll, ts)
            for request in roll.requests:
                assert engine.place_order(ACCOUNT, request, ts).status is OrderStatus.FILLED
            rolls.append((ts, roll))

    # One roll, at the first tick inside the 48-hour window, before expiry.
    assert [ts for ts, _ in rolls] == [EXPIRY - timedelta(hours=48)]
    (_, roll), = rolls
    assert [(r.symbol, r.side, r.amount_contracts, r.reduce_only) for r in roll.requests] == [
        (DEC, Side.BUY, D(1), True), (MAR, Side.SELL, D("1.000"), False)]
    # After expiry: the hedge is on March, still 1 BTC short; nothing was left on December to settle.
    assert [(p.symbol, p.contracts) for p in engine.positions(ACCOUNT)] == [(MAR, D(-1))]
    fills = engine.fills(ACCOUNT)
    assert list(dict.fromkeys((f.client_order_id, f.symbol) for f in fills)) == [  # a fill per book level
        ("hedge", DEC), (client_order_id(1, 0), DEC), (client_order_id(1, 1), MAR)]
    assert all(f.ts < EXPIRY for f in fills)

    # The journal: one decision `roll`, its two orders under its id.
    decisions = await journal.list_decisions()
    assert [(d["decision_id"], d["reason"], d["symbol"], d["side"]) for d in decisions] == [
        (1, "roll", MAR, "sell")]
    orders = await journal.list_orders()
    legs = sorted((o["client_order_id"], o["decision_id"], o["symbol"], o["reduce_only"]) for o in orders)
    assert legs == [
        (client_order_id(1, 0), 1, DEC, True), (client_order_id(1, 1), 1, MAR, False)]


async def test_a_roll_waits_for_fresh_prices() -> None:
    engine = SimEngine({**default_instruments(), **future_instruments(START)}, seed=5)
    engine.open_account(ACCOUNT, {"USDT": D(20_000)})
    ticks = iter(btc_feed())
    ts, quotes = next(ticks)
    for quote in quotes:
        engine.on_quote(quote)
    engine.place_order(ACCOUNT, OrderRequest("hedge", DEC, Side.SELL, D(1)), ts)
    inside = EXPIRY - timedelta(hours=47)
    quoted = {s: q for s in engine.instruments if (q := engine.quote(s)) is not None}
    stale = RollSettings(stale_secs=60)
    assert due_rolls(engine.positions(ACCOUNT), engine.instruments, quoted, inside, lambda: 1, stale) == []
    without_march = {s: q for s, q in quoted.items() if s != MAR}
    fresh = RollSettings(stale_secs=10 * 86_400)
    held = engine.positions(ACCOUNT)
    assert due_rolls(held, engine.instruments, without_march, inside, lambda: 1, fresh) == []
    assert len(due_rolls(held, engine.instruments, quoted, inside, lambda: 1, fresh)) == 1


def test_an_inverse_quarterly_hedge_rolls_its_coins_into_more_usd_face_on_the_dearer_contract() -> None:
    engine = SimEngine({**default_instruments(), **future_instruments(START)}, seed=5)
    engine.open_account(ACCOUNT, {"BTC": D(1)})
    inverse_dec, inverse_mar = "BTC/USD:BTC-261225", "BTC/USD:BTC-270326"
    rolls: list[RollOrders] = []
    for ts, quotes in btc_feed():
        for quote in quotes:
            engine.on_quote(quote)
        if ts == START:
            engine.place_order(ACCOUNT, OrderRequest("hedge", inverse_dec, Side.SELL, D(60_000)), ts)
        quoted = {s: q for s in engine.instruments if (q := engine.quote(s)) is not None}
        for roll in due_rolls(engine.positions(ACCOUNT), engine.instruments, quoted, ts, lambda: 1,
                              RollSettings(stale_secs=60)):
            for request in roll.requests:
                engine.place_order(ACCOUNT, request, ts)
            rolls.append(roll)
    (roll,) = rolls
    close, opened = roll.plan.close, roll.plan.open
    assert opened is not None and close.amount_contracts == D(60_000)
    assert opened.reference_price > close.reference_price  # contango: March is dearer
    # the same coins: 60,000 USD face at December's mark is N USD face at March's
    same_coins_usd = D(60_000) * opened.reference_price / close.reference_price
    assert opened.amount_contracts == same_coins_usd.quantize(D(1))
    assert [(p.symbol, p.contracts) for p in engine.positions(ACCOUNT)] == [
        (inverse_mar, -opened.amount_contracts)]
