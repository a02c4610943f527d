"""The simulated exchange's own account margin (issue 13): standard cross margin per settlement currency,
its ratio the engine's maintenance margin over the settlement currency's margin balance (wallet + futures
PnL), checked against `domain.margin.account_margin` on the engine's snapshot."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from deltakeeper.domain.margin import MarginRules, account_margin
from deltakeeper.domain.orders import OrderRequest, OrderStatus, Quote, Side
from deltakeeper.domain.venue_margin import AccountMode
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import synthetic_feed
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments

D = Decimal
START = datetime(2026, 1, 5, tzinfo=UTC)
ACCOUNT = "sim"
LINEAR = "SOL/USDT:USDT"


def quote(mark: str, ts: datetime) -> Quote:
    return Quote(LINEAR, D(mark) - D("0.1"), D(mark) + D("0.1"), D(mark), ts)


async def test_the_simulated_ratio_is_the_engine_s_maintenance_margin_over_the_margin_balance() -> None:
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account(ACCOUNT, {"USDT": D(1000), "SOL": D(5)})
    engine.on_quote(quote("100", START))
    gateway = SimGateway(engine, synthetic_feed(start=START, price=100.0, tick_secs=60, seed=2),
                         SimClock(math.inf, anchor_sim=START), None, ACCOUNT)  # its feed never started
    flat = await gateway.fetch_account_margin()
    state = engine.place_order(ACCOUNT, OrderRequest("dk1a0", LINEAR, Side.SELL, D(50)), START)
    assert state.status is OrderStatus.FILLED
    engine.on_quote(quote("110", START + timedelta(minutes=1)))  # the short loses about 500 USDT

    venue = await gateway.fetch_account_margin()
    snapshot = engine.snapshot(ACCOUNT, START)
    usdt = account_margin(engine.instruments, snapshot.balances, snapshot.positions, {}, MarginRules()
                          ).by_settle["USDT"]

    assert flat.mode is AccountMode.STANDARD and flat.maintenance_ratio == 0
    assert venue.mode is AccountMode.STANDARD
    assert venue.maintenance_ratio == usdt.maintenance_margin / usdt.equity
    assert venue.ratio_source == "maintenance margin/margin balance USDT"
    assert usdt.equity < snapshot.balances["USDT"] - 450  # the loss counts against the wallet
