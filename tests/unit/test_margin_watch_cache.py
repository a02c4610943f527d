"""`MarginWatch` keeps its last margin while the account snapshot, the instruments, the rules and the prices
are the same objects: what it returns must equal a margin computed afresh after any event."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import cast

import pytest

from deltakeeper.app.margin_watch import MarginWatch
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import Core
from deltakeeper.domain import risk
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.margin import MarginRules
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import Alerts, Exchange, Journal
from deltakeeper.sim.clock import SimClock

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LINEAR = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", contract_size=D("0.01"),
                    lot_step_contracts=D(1))
INVERSE = Instrument("BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True, contract_size=D(100),
                     lot_step_contracts=D(1))
SOL = Instrument("SOL/USDT:USDT", Kind.PERPETUAL, "SOL", "USDT", "USDT", lot_step_contracts=D("0.1"))
CALL = Instrument("BTC/USD:BTC-260204-60000-C", Kind.OPTION, "BTC", "USD", "BTC", strike=D(60_000),
                  option_type="call", expiry=T0 + timedelta(days=30))
INSTRUMENTS = {i.symbol: i for i in (LINEAR, INVERSE, SOL, CALL)}
LIMITS = risk.RiskLimits(D(10**6), D(10**9), D(10**9), 60.0, D(500))


def random_account(rng: random.Random, ts: datetime) -> AccountSnapshot:
    positions = [
        Position(LINEAR.symbol, D(rng.randint(-500, 500)), D(60_000), D(rng.randint(55_000, 65_000))),
        Position(INVERSE.symbol, D(rng.randint(-300, 300)), D(60_000), D(rng.randint(55_000, 65_000))),
        Position(SOL.symbol, D(rng.randint(-900, 900)) / 10, D(150), D(rng.randint(120, 180))),
    ]
    if rng.random() < 0.3:  # a short call without its underlying's price: no margin until BTC is priced
        positions.append(Position(CALL.symbol, D(-2), D("0.05"), D("0.05"), delta=D("0.4")))
    balances = {"USDT": D(rng.randint(1_000, 500_000)), "BTC": D(rng.randint(0, 300)) / 100}
    return AccountSnapshot(balances, tuple(rng.sample(positions, len(positions))), ts)


def margin_watch(state: MarketState, rules: MarginRules | None = None) -> MarginWatch:
    placeholder = object()  # the watch reads the market state only
    core = Core.new(cast(Alerts, placeholder), 300.0)
    return MarginWatch(state, cast(Exchange, placeholder), SimClock(0, anchor_sim=T0),
                       cast(Journal, placeholder), cast(Alerts, placeholder), core.trading, core.counters,
                       core.decisions, {}, rules)


@pytest.mark.parametrize("seed", range(4))
def test_the_kept_margin_and_contexts_equal_a_fresh_computation_after_every_event(seed: int) -> None:
    rng = random.Random(seed)
    state = MarketState(dict(INSTRUMENTS), {}, {"BTC": LINEAR.symbol, "SOL": SOL.symbol})
    watch = margin_watch(state)
    ts = T0
    hits = 0
    for step in range(300):
        ts += timedelta(seconds=1)
        event = rng.random()
        if event < 0.5:  # a tick on one of the markets
            symbol = rng.choice(list(INSTRUMENTS)[:3])
            mark = D(rng.randint(100, 70_000))
            state.on_quote(Quote(symbol, mark - 1, mark + 1, mark, ts))
        elif event < 0.6:  # the same price again, as a new quote
            old = state.quotes.get(LINEAR.symbol)
            if old is not None:
                state.on_quote(replace(old, mark=D(str(old.mark)), ts=ts))
        elif event < 0.8:
            state.on_account(random_account(rng, ts))
        elif event < 0.85:  # the exchange's tiers loaded: new rules
            watch.rules = replace(watch.rules, leverage=D(rng.choice([5, 10, 20])))
        elif event < 0.9:  # a market listed later
            listed = replace(SOL, symbol=f"X{step}/USDT:USDT", base=f"X{step}")
            state.instruments[listed.symbol] = listed
        fresh = margin_watch(state, watch.rules)
        kept = watch.margin()
        assert kept == fresh.margin(), f"step {step}"
        again = watch.margin()
        if kept is not None:
            assert again is kept  # nothing changed: the kept one
            hits += 1
        for symbol in INSTRUMENTS:
            assert watch.context(symbol) == fresh.context(symbol), f"step {step} {symbol}"
    assert hits > 50
