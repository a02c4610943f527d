"""Shadow mode is an exchange adapter (`adapters/shadow.py`): the real account and market are read, each
decision is journaled with its order, the order journaled cancelled as `shadow mode`, and nothing reaches
the exchange; the decision ends there (no decision after it, no back-off)."""

from __future__ import annotations

from decimal import Decimal as D

from tests.unit.test_order_path import HELD_SOL, SOL, Bot

from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, OrderType, Side


async def test_a_shadow_decision_is_journaled_with_its_order_cancelled_and_nothing_is_sent() -> None:
    bot = Bot(shadow=True)
    await bot.quote()
    await bot.service.orders.settled()

    assert bot.exchange.placed == []
    [(decision, pending)] = bot.journal.decisions  # one decision: none after the withheld order
    assert decision.reason == "rebalance" and pending is not None
    assert pending.amount_contracts == HELD_SOL
    ended = bot.journal.last(pending.client_order_id)
    assert isinstance(ended, OrderState)
    assert (ended.status, ended.reject_reason) == (OrderStatus.CANCELED, "shadow mode")
    assert bot.service.orders.in_flight == {}
    assert not bot.service.orders.sender.backing_off(SOL)

    await bot.quote()  # the next quote decides again at once, as shadow mode always has
    await bot.service.orders.settled()
    assert [d.reason for d, _ in bot.journal.decisions] == ["rebalance", "rebalance"]
    assert bot.exchange.placed == []


async def test_cancels_in_shadow_mode_reach_nothing_and_reads_pass_through() -> None:
    bot = Bot(shadow=True)
    resting = OrderRequest("dkrest1", SOL, Side.BUY, D(1), OrderType.LIMIT, price=D(90))
    bot.exchange.orders["dkrest1"] = bot.exchange._state(resting, D(0), OrderStatus.OPEN, None)
    await bot.service.exchange.cancel_all_orders()
    await bot.service.exchange.cancel_order(SOL, "dkrest1")
    assert bot.exchange.orders["dkrest1"].status is OrderStatus.OPEN
    assert (await bot.service.exchange.fetch_order(SOL, "dkrest1")) == bot.exchange.orders["dkrest1"]
    assert (await bot.service.exchange.fetch_account()).balances["SOL"] == HELD_SOL
