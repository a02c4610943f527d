"""A proxy hedge at the EWMA beta in the decision cycle: no hedge on a few returns, and once a beta has been
used a later unknown estimate holds it (shadow mode: decisions are journaled, nothing is sent)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import cast

from deltakeeper.adapters.shadow import ShadowExchange
from deltakeeper.app.cycle import CycleOptions
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import ServiceOptions, build_service
from deltakeeper.domain import risk
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import OrderState, Quote
from deltakeeper.domain.policy import AssetPolicy, Band, BandUnit
from deltakeeper.domain.records import AccountSnapshot, DecisionRecord, OrderRecord
from deltakeeper.domain.volatility import MIN_BETA_SAMPLES
from deltakeeper.ports import Alerts, Exchange, Journal

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BTC = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", lot_step_contracts=D("0.001"),
                 min_contracts=D("0.001"))
ETH = Instrument("ETH/USDT:USDT", Kind.PERPETUAL, "ETH", "USDT", "USDT", lot_step_contracts=D("0.01"))
LIMITS = risk.RiskLimits(D(10**9), D(10**12), D(10**12), 60.0, D(2000))  # bars of 9 %: no collar
BAR = timedelta(seconds=60)


@dataclass
class Clock:
    t: datetime = T0
    speed: float = 1.0

    def now(self) -> datetime:
        return self.t


@dataclass
class DecisionLog:
    """The Journal port as far as a shadow-mode decision uses it."""

    decisions: list[DecisionRecord] = field(default_factory=list)

    async def record_decision(self, decision: DecisionRecord, pending: OrderRecord | None = None) -> None:
        self.decisions.append(decision)

    async def update_order(self, state: OrderState) -> None:
        pass


class Unreachable:
    """The exchange behind the shadow adapter: nothing here is ever called."""

    name = "unreachable"


class Desk:
    """A decision cycle hedging 10 ETH with the BTC perpetual at the EWMA beta, fed quotes one bar apart."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.wall = 0.0
        self.state = MarketState({BTC.symbol: BTC, ETH.symbol: ETH}, {}, {"ETH": ETH.symbol},
                                 monotonic=lambda: self.wall)
        self.journal = DecisionLog()
        policy = AssetPolicy("ETH", BTC.symbol, Band(BandUnit.COIN, D("0.5")))
        self.service = build_service(
            ShadowExchange(cast(Exchange, Unreachable())), cast(Journal, self.journal), self.clock,
            cast(Alerts, object()), self.state, {"ETH": policy},
            ServiceOptions(LIMITS, 30.0, 300.0, CycleOptions(betas={"ETH": None})),
            monotonic=lambda: self.wall,
        )
        self.eth, self.btc = 3000.0, 60_000.0
        self.hold(D(0))

    def hold(self, btc_contracts: D) -> None:
        """The account: 10 ETH, and this BTC perpetual position (the hedge as it filled)."""
        position = Position(BTC.symbol, btc_contracts, D(60_000), D(60_000))
        self.state.on_account(AccountSnapshot({"ETH": D(10), "USDT": D(10**6)}, (position,), self.clock.t))

    async def bar(self, r_eth: float, r_btc: float) -> DecisionRecord:
        """One bar later, both markets moved by these log returns; the ETH decision taken on it."""
        self.clock.t += BAR
        self.wall += 1
        self.eth, self.btc = self.eth * math.exp(r_eth), self.btc * math.exp(r_btc)
        for symbol, price in ((BTC.symbol, self.btc), (ETH.symbol, self.eth)):
            p = D(repr(round(price, 2)))
            assert self.service.ingest.on_quote(Quote(symbol, p - D("0.01"), p + D("0.01"), p, self.clock.t))
            await self.service.cycle.on_quote(symbol)
            await self.service.orders.settled()  # a hedge is journaled not sent, and the instrument free
        return self.journal.decisions[-1]


async def test_a_few_returns_are_no_beta_and_no_hedge_whatever_they_estimate() -> None:
    desk = Desk()
    await desk.bar(0, 0)
    # ETH moves 3.6 % while BTC moves 0.1 %: a plain estimate of 36, which shorted ~9x the exposure
    for r_eth, r_btc in [(0.036, 0.001), (-0.036, -0.001), (0.036, 0.001)]:
        decision = await desk.bar(r_eth, r_btc)
        assert decision.reason == "beta_unknown" and decision.amount_contracts is None
    assert all(d.reason == "beta_unknown" for d in desk.journal.decisions)


async def test_once_a_beta_has_been_used_an_unknown_estimate_holds_it_and_the_hedge_is_kept() -> None:
    desk = Desk()
    await desk.bar(0, 0)
    for k in range(MIN_BETA_SAMPLES + 1):  # ETH moves 1.5x BTC (the first bar sets the bar length)
        decision = await desk.bar(0.015 * (-1) ** k, 0.01 * (-1) ** k)
    assert decision.reason == "rebalance" and decision.detail.startswith("beta=1.5 ")
    assert decision.amount_contracts is not None
    desk.hold(-decision.amount_contracts)  # the hedge filled
    # then the two move against each other: the estimate turns negative, unknown
    held = [await desk.bar(0.09 * (-1) ** k, -0.09 * (-1) ** k) for k in range(4)]
    track = desk.service.cycle.risk.beta_model("ETH")
    assert track is not None and track.hedge_ratio is None
    assert all(d.reason != "beta_unknown" for d in held)
    # the hedge counted back and followed at the beta it was sized at
    assert all(d.detail.startswith("beta=1.5 ") and d.detail.endswith(" beta_held") for d in held)
