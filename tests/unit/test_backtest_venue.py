"""The backtest's ports: the exchange reads the account from the engine's latest snapshot while nothing
has changed since, and takes a new one once something has (an order's fills, a quote moving the marks);
the alerts are silent."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D

from deltakeeper.backtest.data import linear_perp
from deltakeeper.backtest.venue import ReplayClock, ReplayExchange
from deltakeeper.domain.orders import OrderRequest, OrderType, Quote, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.engine import SimEngine

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SOL = linear_perp("SOL")


class CountingEngine(SimEngine):
    """The real engine, counting the snapshots it takes."""

    taken = 0

    def snapshot(self, account_id: str, now: datetime) -> AccountSnapshot:
        self.taken += 1
        return super().snapshot(account_id, now)


def quote(mark: str, t_secs: float) -> Quote:
    return Quote(SOL.symbol, D(mark) - D("0.01"), D(mark) + D("0.01"), D(mark),
                 datetime.fromtimestamp(t_secs, UTC))


def same_account(read: AccountSnapshot, engine: SimEngine, now: datetime) -> bool:
    fresh = engine.snapshot("bt", now)
    return replace(read, seq=0) == replace(fresh, seq=0)


async def test_a_read_takes_the_engines_snapshot_while_it_holds_and_a_new_one_after_a_quote() -> None:
    engine = CountingEngine({SOL.symbol: SOL}, seed=0)
    engine.open_account("bt", {"USDT": D(1_000_000)})
    clock = ReplayClock()
    clock.t_secs = T0.timestamp()
    venue = ReplayExchange(engine, "bt", clock, lambda: [])
    engine.on_quote(quote("100", clock.t_secs))

    await venue.place_order(OrderRequest("o1", SOL.symbol, Side.BUY, D(5), OrderType.MARKET))
    taken = engine.taken
    after_fill = await venue.fetch_account()
    assert engine.taken == taken  # the snapshot the engine took after the fill
    assert after_fill.positions[0].contracts == D(5)
    assert same_account(after_fill, engine, clock.now())

    clock.t_secs += 3600
    engine.on_quote(quote("110", clock.t_secs))
    taken = engine.taken
    moved = await venue.fetch_account()
    assert engine.taken == taken + 1  # the marks moved: a new snapshot
    assert moved.positions[0].mark_price == D(110)
    assert moved.ts == clock.now()
    assert moved.seq > after_fill.seq
    assert same_account(moved, engine, clock.now())

    taken = engine.taken
    again = await venue.fetch_account()
    assert engine.taken == taken  # nothing happened since
    assert again.seq > moved.seq
    assert replace(again, seq=0) == replace(moved, seq=0)
