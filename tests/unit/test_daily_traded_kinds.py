"""`DK_MAX_DAILY_TRADED_USD` counts the bot's trading only: a delivery at expiry or a liquidation is the
exchange closing a position, journaled like any fill but no part of the day's traded notional, so it
cannot push the bot into reduce-only."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from typing import cast

from tests.unit.test_unpriced_amounts import LIMITS, SOL, T0, FillLog, ingest

from deltakeeper.domain import risk
from deltakeeper.domain.orders import Fill, OrderIntent, Side
from deltakeeper.domain.risk import TradingState

TRADE = Fill("t1", "o1", "dk1a0", SOL.symbol, Side.SELL, D(10), D(150), D("0.8"), "USDT", T0, D(1500))
DELIVERY = replace(TRADE, trade_id="t2", exchange_order_id="o2", client_order_id=None, side=Side.BUY,
                   fee=D(0), ts=T0 + timedelta(hours=1), notional_usd=D(30_000), delivery=True)
LIQUIDATION = replace(DELIVERY, trade_id="t3", exchange_order_id="o3", delivery=False, liquidation=True)


async def test_only_trades_count_toward_the_days_traded_notional() -> None:
    h = ingest()
    for fill in (TRADE, DELIVERY, LIQUIDATION):
        await h.on_fill(fill)

    assert h.daily.today_usd(T0 + timedelta(hours=2)) == D(1500)
    assert h.counters.fills == 3  # all journaled
    assert cast(FillLog, h.journal).rows == [TRADE, DELIVERY, LIQUIDATION]


async def test_a_delivery_larger_than_the_daily_limit_leaves_the_next_hedge_unclipped() -> None:
    h = ingest()
    await h.on_fill(TRADE)
    await h.on_fill(DELIVERY)
    limits = replace(LIMITS, max_daily_traded_usd=D(10_000))
    ctx = risk.RiskContext(quote_age_secs=0.0, mark_price=D(150), position_contracts=D(0),
                           traded_today_usd=h.daily.today_usd(T0 + timedelta(hours=2)),
                           state=TradingState.ACTIVE, margin=None)

    outcome = risk.check(OrderIntent(SOL.symbol, Side.SELL, D(10), D(150)), SOL, ctx, limits)

    assert outcome.intent is not None and outcome.intent.amount_contracts == 10
    assert "max_daily_traded" not in outcome.notes
    counted = replace(ctx, traded_today_usd=D(1500) + DELIVERY.notional_usd)  # were the delivery counted
    assert "max_daily_traded" in risk.check(OrderIntent(SOL.symbol, Side.SELL, D(10), D(150)), SOL,
                                            counted, limits).notes
