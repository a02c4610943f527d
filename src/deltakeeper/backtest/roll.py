"""A quarterly hedge over a price history: the roll before each expiry, replayed on the simulated exchange.

`replay_quarterly_hedge` holds `holding_coin` of an asset and hedges it short on the nearest quarterly
(`domain.roll.nearest_quarterly`) from the first tick; each tick, `app.roll.due_rolls` rolls whatever is
inside its roll window, the orders filled by the simulator's engine at its synthetic book, the futures
priced off the replayed spot with `sim.futures`' decaying basis. No I/O, no clock: deterministic in its
inputs. The report counts the rolls, any position the exchange settled because it was not rolled in time,
the fees, and the worst delta (coins of the holding plus the futures' delta) seen at any tick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import count

from deltakeeper.app.roll import RollSettings, due_rolls
from deltakeeper.domain.instruments import ZERO
from deltakeeper.domain.orders import OrderRequest, Side
from deltakeeper.domain.roll import DEFAULT_ROLL_WINDOW_SECS, nearest_quarterly
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.feeds import Bar, replay_feed
from deltakeeper.sim.futures import DEFAULT_BASIS_ANNUAL, with_future_quotes
from deltakeeper.sim.markets import ASSETS, SimAsset, future_instruments

ACCOUNT = "backtest"
_DAYS_PER_QUARTER = 91


@dataclass(frozen=True, slots=True)
class RollEvent:
    ts: datetime
    expiring: str
    next: str
    exposure_coin: Decimal


@dataclass(frozen=True, slots=True)
class QuarterlyRollReport:
    rolls: tuple[RollEvent, ...]
    settled_unrolled: tuple[str, ...]
    """Futures the exchange settled with the hedge still on them: a roll that came too late (or never)."""
    fees_usd: Decimal
    max_abs_delta_coin: Decimal
    final_positions: tuple[tuple[str, Decimal], ...]


def replay_quarterly_hedge(
    bars: Sequence[Bar],
    asset: SimAsset = ASSETS["SOL"],
    *,
    holding_coin: Decimal,
    start: datetime | None = None,
    tick_secs: int = 3600,
    basis_annual: Decimal = DEFAULT_BASIS_ANNUAL,
    roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS,
    collateral_usd: Decimal = Decimal(1_000_000),
) -> QuarterlyRollReport:
    """Replay `bars` (moved to `start`, as `replay_feed` moves them) with `holding_coin` of `asset` hedged on
    its linear quarterlies, rolled `roll_window_secs` before each expiry."""
    first = start or bars[0].ts
    span_days = (bars[-1].ts - bars[0].ts + timedelta(days=1)).days
    futures = future_instruments(first, math.ceil(span_days / _DAYS_PER_QUARTER) + 1, (asset.base,))
    engine = SimEngine({**{i.symbol: i for i in asset.instruments()}, **futures})
    engine.open_account(ACCOUNT, {asset.base: holding_coin, "USDT": collateral_usd})
    settings = RollSettings(roll_window_secs=roll_window_secs, stale_secs=tick_secs)
    decision_ids = count(1)
    rolls: list[RollEvent] = []
    settled: list[str] = []
    held: set[str] = set()
    max_delta = ZERO
    spot = replay_feed(bars, asset, tick_secs=tick_secs, start=start)
    for ts, quotes in with_future_quotes(spot, futures, basis_annual):
        for quote in quotes:
            engine.on_quote(quote)
        positions = engine.positions(ACCOUNT)
        settled.extend(sorted(held - {p.symbol for p in positions}))
        if not positions:
            _open_hedge(engine, holding_coin, asset.base, ts, roll_window_secs)
        quoted = {s: q for s in engine.instruments if (q := engine.quote(s)) is not None}
        for roll in due_rolls(engine.positions(ACCOUNT), engine.instruments, quoted, ts,
                              lambda: next(decision_ids), settings):
            for request in roll.requests:
                engine.place_order(ACCOUNT, request, ts)
            plan = roll.plan
            rolls.append(RollEvent(ts, plan.expiring, plan.next, plan.exposure_coin))
        positions = engine.positions(ACCOUNT)
        held = {p.symbol for p in positions}
        delta = holding_coin + sum((engine.instruments[p.symbol].delta_coin(p.contracts, p.mark_price)
                                    for p in positions), ZERO)
        max_delta = max(max_delta, abs(delta))
    fees = sum((f.fee if f.fee_currency == "USDT" else f.fee * f.price for f in engine.fills(ACCOUNT)), ZERO)
    return QuarterlyRollReport(
        tuple(rolls), tuple(settled), fees, max_delta,
        tuple((p.symbol, p.contracts) for p in engine.positions(ACCOUNT)),
    )


def _open_hedge(engine: SimEngine, holding_coin: Decimal, base: str, ts: datetime,
                roll_window_secs: float) -> None:
    """Short `holding_coin` on the nearest quarterly outside the roll window (none: stay unhedged)."""
    future = nearest_quarterly(engine.instruments.values(), base, ts, roll_window_secs=roll_window_secs)
    quote = engine.quote(future.symbol) if future is not None else None
    if future is None or quote is None:
        return
    contracts = future.round_contracts(future.contracts_for_coin(holding_coin, quote.mark), toward_zero=True)
    if contracts > 0:
        request = OrderRequest(f"hedge{ts:%Y%m%d%H%M}", future.symbol, Side.SELL, contracts)
        engine.place_order(ACCOUNT, request, ts)
