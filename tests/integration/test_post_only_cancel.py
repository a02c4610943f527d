"""A resting post-only order cancelled by the operator (cancel-all, halt), on the live loop over the real
simulated exchange and a real SQLite journal: the decision ends there, no market fallback is sent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.integration.service_harness import journal_for, make_settings
from tests.integration.test_live_policies import flat_feed, gateway_over, idle, running, until

from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app.runner import Runner
from deltakeeper.domain.orders import client_order_id

SOL = "SOL/USDT:USDT"


async def resting_post_only(runner: Runner, journal: SqlJournal) -> dict[str, object]:
    """The bot's first hedge: a post-only sell resting at the ask of a market that never moves."""

    async def resting() -> bool:
        return any(o["status"] == "open" for o in await journal.list_orders())

    await until(resting, 15, "the post-only order to rest")
    [order] = await journal.list_orders()
    assert order["order_type"] == "limit"
    assert runner.service.orders.in_flight == {SOL: order["client_order_id"]}
    return order


async def test_cancel_all_on_a_resting_post_only_order_sends_no_market_fallback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, execution="post-only", post_only_timeout_secs=60)
    gateway, clock = gateway_over(settings, lambda start: flat_feed(start, 100.0),
                                  {"USDT": Decimal(100_000), "SOL": Decimal(100)})
    async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as (runner, tap):
        limit = await resting_post_only(runner, journal)
        assert runner.control is not None
        await runner.control.handle("cancel-all", "clean the book", "pytest")  # as POST /api/cancel-all
        await until(idle(runner), 10, "the decision to end")
        orders = [o for o in await journal.list_orders() if o["decision_id"] == limit["decision_id"]]
        placed = [cid for cid, _ in tap.open_at_placement]
    assert [(o["order_type"], o["status"]) for o in orders] == [("limit", "canceled")]
    assert placed[0] == limit["client_order_id"]
    assert client_order_id(int(str(limit["decision_id"])), 0, 1) not in placed  # its market fallback


async def test_a_halt_on_a_resting_post_only_order_sends_nothing_more(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, execution="post-only", post_only_timeout_secs=60)
    gateway, clock = gateway_over(settings, lambda start: flat_feed(start, 100.0),
                                  {"USDT": Decimal(100_000), "SOL": Decimal(100)})
    async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as (runner, tap):
        limit = await resting_post_only(runner, journal)
        assert runner.control is not None
        await runner.control.handle("halt", "stop trading", "pytest")
        await until(idle(runner), 10, "the decision to end")
        placed = [cid for cid, _ in tap.open_at_placement]
    assert placed == [limit["client_order_id"]]
