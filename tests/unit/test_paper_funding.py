"""When paper trading settles funding: at the time the venue announces with each quote, at the rate it
published for that time, once; on the interval's UTC grid where the venue announces no time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.orders import FundingPayment, OrderRequest, Quote, Side
from deltakeeper.sim.clock import WallClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.paper import PaperGateway

PERP = "SOL/USDT:USDT"
T0 = datetime(2026, 3, 2, 7, 59, tzinfo=UTC)
EIGHT = datetime(2026, 3, 2, 8, tzinfo=UTC)


def paper_short_10() -> PaperGateway:
    """A paper account short 10 SOL perpetual on the simulator's markets (the venue is never asked)."""
    paper = PaperGateway(CcxtExchange("bybit", clock=WallClock()), WallClock(), {"USDT": Decimal(10_000)},
                         stale_after_secs=15, seed=1)
    engine = SimEngine(default_instruments(), seed=1)
    engine.funding_on_grid = False
    paper._attach(engine, {"USDT": Decimal(10_000)})
    engine.on_quote(quote(T0 - timedelta(minutes=1), rate=None))
    engine.place_order(paper.account_id, OrderRequest("dk1a0", PERP, Side.SELL, Decimal(10)), T0)
    return paper


def quote(ts: datetime, rate: str | None = "0.0001", announced: datetime | None = None,
          mark: str = "100") -> Quote:
    price = Decimal(mark)
    return Quote(PERP, price - Decimal("0.01"), price + Decimal("0.01"), price, ts,
                 funding_rate=None if rate is None else Decimal(rate), next_funding_ts=announced)


def payments(paper: PaperGateway) -> list[FundingPayment]:
    return paper.engine.funding_payments(paper.account_id)


def test_funding_settles_once_at_the_announced_time_at_the_rate_published_for_it() -> None:
    paper = paper_short_10()
    paper._take(quote(T0, "0.0003", EIGHT))
    paper._take(quote(T0 + timedelta(seconds=30), "0.0002", EIGHT))
    assert payments(paper) == []

    paper._take(quote(EIGHT + timedelta(seconds=1), "0.0005", EIGHT, mark="110"))  # the venue lags
    paper._take(quote(EIGHT + timedelta(seconds=2), "0.0005", EIGHT, mark="110"))
    paper._take(quote(EIGHT + timedelta(seconds=3), "0.0005", EIGHT + timedelta(hours=8)))

    [payment] = payments(paper)
    assert (payment.ts, payment.rate) == (EIGHT, Decimal("0.0002"))
    assert payment.amount == Decimal("0.22")  # short 10 x mark 110 x 0.0002, received


def test_funding_settles_when_the_venue_announces_the_next_time_before_our_clock_gets_there() -> None:
    paper = paper_short_10()
    paper._take(quote(T0, "0.0001", EIGHT))
    paper._take(quote(EIGHT - timedelta(seconds=2), "-0.0001", EIGHT + timedelta(hours=8)))

    [payment] = payments(paper)
    assert (payment.ts, payment.rate, payment.amount) == (EIGHT, Decimal("0.0001"), Decimal("0.1"))


def test_without_an_announced_time_funding_settles_on_the_intervals_utc_grid() -> None:
    paper = paper_short_10()
    paper._take(quote(T0))
    paper._take(quote(EIGHT + timedelta(seconds=5), "0.0004"))
    paper._take(quote(EIGHT + timedelta(hours=8, seconds=5)))

    assert [(p.ts, p.rate) for p in payments(paper)] == [
        (EIGHT, Decimal("0.0001")), (EIGHT + timedelta(hours=8), Decimal("0.0004"))
    ]


def test_no_funding_without_a_published_rate() -> None:
    paper = paper_short_10()
    paper._take(quote(T0, None, EIGHT))
    paper._take(quote(EIGHT + timedelta(seconds=5), None, EIGHT + timedelta(hours=8)))
    assert payments(paper) == []


def test_an_announced_time_intervals_ahead_is_not_taken_for_a_settlement() -> None:
    paper = paper_short_10()
    paper._take(quote(T0, "0.0001", EIGHT))
    paper._take(quote(T0 + timedelta(seconds=1), "0.0001", EIGHT + timedelta(days=365)))  # corrupted
    assert payments(paper) == []
    paper._take(quote(EIGHT + timedelta(seconds=1), "0.0001", EIGHT + timedelta(hours=8)))
    assert [p.ts for p in payments(paper)] == [EIGHT]
