"""The price collar holds an order's touch to a price independent of the quote it is priced on: a tick whose
book and mark moved together is not its own reference (shadow mode: decisions journaled, nothing sent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import cast

from structlog.testing import capture_logs
from tests.unit.test_proxy_beta import Clock, DecisionLog, Unreachable

from deltakeeper.adapters.shadow import ShadowExchange
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import ServiceOptions, build_service
from deltakeeper.domain import risk
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.policy import AssetPolicy, Band, BandUnit
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import Alerts, Exchange, Journal

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SOL = Instrument("SOL/USDT:USDT", Kind.PERPETUAL, "SOL", "USDT", "USDT", lot_step_contracts=D("0.1"))
LIMITS = risk.RiskLimits(D(10**9), D(10**12), D(10**12), 60.0, D(100))


def tick(price: str, secs: int) -> Quote:
    """A whole tick at `price`: book, mark and index together."""
    p = D(price)
    return Quote(SOL.symbol, p - D("0.01"), p + D("0.01"), p, T0 + timedelta(seconds=secs), index=p)


async def test_a_whole_tick_moved_within_the_gate_is_collared_against_the_price_before_it() -> None:
    clock = Clock(T0)
    wall = [0.0]
    state = MarketState({SOL.symbol: SOL}, {}, {"SOL": SOL.symbol}, monotonic=lambda: wall[0])
    journal = DecisionLog()
    service = build_service(
        ShadowExchange(cast(Exchange, Unreachable())), cast(Journal, journal), clock, cast(Alerts, object()),
        state, {"SOL": AssetPolicy("SOL", SOL.symbol, Band(BandUnit.COIN, D(1)))},
        ServiceOptions(LIMITS, 30.0, 300.0), monotonic=lambda: wall[0],
    )
    service.ingest.on_account(AccountSnapshot({"SOL": D(100), "USDT": D(10**6)}, (), T0))
    reasons = []
    with capture_logs():
        for secs, price in ((1, "136"), (2, "142.8"), (3, "142.9")):  # +5 %: within the 10 % jump limit
            clock.t, wall[0] = T0 + timedelta(seconds=secs), float(secs)
            assert service.ingest.on_quote(tick(price, secs))
            await service.cycle.on_quote(SOL.symbol)
            await service.orders.settled()
            reasons.append((journal.decisions[-1].reason, journal.decisions[-1].price_usd))
    assert state.references[SOL.symbol] == D("142.8")
    # the first quote has nothing before it: its own mark; the tick 5 % away is not its own reference
    assert reasons == [("rebalance", D(136)), ("price_collar", D("142.8")), ("rebalance", D("142.9"))]
