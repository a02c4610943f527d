"""The ports a backtest gives the live decision cycle (app/service.py): the replay's clock, the simulated
engine as the exchange (its one account, and the options books held elsewhere reported beside its
positions), a journal kept in memory, silent alerts, and a price gate that takes the history as it is."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.exposure import AssetDelta, Position
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.margin_tiers import MarginTier
from deltakeeper.domain.orders import Fill, FundingPayment, OrderRequest, OrderState, Quote
from deltakeeper.domain.price_gate import PriceGate, Sample, Verdict
from deltakeeper.domain.records import AccountSnapshot, ControlState, DecisionRecord, OrderRecord
from deltakeeper.domain.venue_margin import VenueMargin, unknown_margin
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.engine import SimEngine


class ReplayClock:
    """Stands at the price event being replayed."""

    speed = 1.0

    def __init__(self) -> None:
        self.t_secs = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t_secs, UTC)

    def monotonic(self) -> float:
        """The replay's seconds, for the quote ages, order timeouts and back-offs of the order runner."""
        return self.t_secs


class ReplayGate(PriceGate):
    """History is taken as it is: every quote is accepted, its own mark its reference (the price collar
    compares an order's touch with the same bar's mark)."""

    def check(self, symbol: str, asset: str | None, sample: Sample) -> Verdict:
        return Verdict(True, "consistent", sample.mark, sample.mid)


class ReplayExchange:
    """`ports.Exchange` on one account of the simulated engine. Positions held outside the exchange (an
    options book) are reported with the account's, as `held_elsewhere` gives them at the time.

    A read of the account takes the engine's latest snapshot of it while that still holds: the engine
    takes one after each change of the account's balances or positions (an order's fills), and it holds
    until the next event of the account or the next quote (which moves the marks)."""

    name = "backtest"

    def __init__(self, engine: SimEngine, account_id: str, clock: ReplayClock,
                 held_elsewhere: Callable[[], list[Position]]) -> None:
        self.engine = engine
        self.account_id = account_id
        self.clock = clock
        self.held_elsewhere = held_elsewhere
        self._seq = itertools.count(1)
        self._snapshot: AccountSnapshot | None = None
        """The engine's latest snapshot of the account, until it no longer holds."""
        engine.subscribe(self._on_event)
        engine.subscribe_quotes(self._on_quote)

    def _on_event(self, account_id: str, event: AccountEvent) -> None:
        if account_id == self.account_id:
            self._snapshot = event if type(event) is AccountSnapshot else None

    def _on_quote(self, quote: Quote) -> None:
        self._snapshot = None

    async def load_instruments(self) -> dict[str, Instrument]:
        return dict(self.engine.instruments)

    async def fetch_account(self) -> AccountSnapshot:
        now = self.clock.now()
        snapshot = self._snapshot
        if snapshot is None or snapshot.ts != now:
            snapshot = self._snapshot = self.engine.snapshot(self.account_id, now)
        return replace(snapshot, positions=(*snapshot.positions, *self.held_elsewhere()), seq=next(self._seq))

    async def _no_stream(self) -> AsyncIterator[Quote]:
        return
        yield  # an async generator that ends at once: the replay pushes prices itself

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        return self._no_stream()

    async def fetch_quote(self, symbol: str) -> Quote:
        quote = self.engine.quote(symbol)
        assert quote is not None, f"no quote for {symbol} yet"
        return quote

    async def _no_events(self) -> AsyncIterator[AccountEvent]:
        return
        yield

    def account_events(self) -> AsyncIterator[AccountEvent]:
        return self._no_events()

    async def place_order(self, request: OrderRequest) -> OrderState:
        return self.engine.place_order(self.account_id, request, self.clock.now())

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        self.engine.cancel_order(self.account_id, symbol, self.clock.now(), client_order_id=client_order_id)

    async def cancel_all_orders(self, symbol: str | None = None) -> None:
        self.engine.cancel_all(self.account_id, symbol, self.clock.now())

    async def fetch_open_orders(self) -> list[OrderState]:
        return self.engine.open_orders(self.account_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return self.engine.order(self.account_id, client_order_id=client_order_id)

    async def fetch_fills(self, since: datetime) -> list[Fill]:
        return self.engine.fills(self.account_id, since)

    async def fetch_funding_payments(self, since: datetime) -> list[FundingPayment]:
        return self.engine.funding_payments(self.account_id, since)

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        instrument = self.engine.instruments[symbol]
        bids, asks = self.engine.book(symbol, depth)
        return ([BookLevel(p, abs(instrument.delta_coin(s, p))) for p, s in bids],
                [BookLevel(p, abs(instrument.delta_coin(s, p))) for p, s in asks])

    async def fetch_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, tuple[MarginTier, ...]]:
        return {}

    async def fetch_account_margin(self) -> VenueMargin:
        return unknown_margin(self.clock.now(), "a backtest has no venue margin figures")

    async def close(self) -> None:
        return None


@dataclass
class ReplayJournal:
    """`ports.Journal` in memory: what the backtest's figures need (each fill once, the orders' ends), the
    rest kept or dropped."""

    on_order_end: Callable[[OrderState], None] = lambda state: None
    trade_ids: set[str] = field(default_factory=set)
    control: ControlState = field(default_factory=lambda: ControlState(halted=False))

    async def record_decision(self, decision: DecisionRecord, pending: OrderRecord | None = None) -> None:
        return None

    async def record_order(self, order: OrderRecord) -> None:
        return None

    async def update_order(self, state: OrderState) -> None:
        if state.status.is_final:
            self.on_order_end(state)

    async def unknown_client_ids(self, client_order_ids: Collection[str]) -> set[str]:
        return set()

    async def record_fills(self, fills: Sequence[Fill]) -> int:
        new = [f for f in fills if f.trade_id not in self.trade_ids]
        self.trade_ids.update(f.trade_id for f in new)
        return len(new)

    async def record_funding(self, payments: Sequence[FundingPayment]) -> int:
        return len(payments)

    async def record_snapshot(self, ts: datetime, deltas: Mapping[str, AssetDelta], trading_state: str
                              ) -> None:
        return None

    async def open_orders(self) -> list[OrderRecord]:
        return []

    async def last_fill_ts(self) -> datetime | None:
        return None

    async def last_funding_ts(self) -> datetime | None:
        return None

    async def traded_usd_since(self, since: datetime) -> Decimal:
        return Decimal(0)

    async def control_state(self) -> ControlState:
        return self.control

    async def set_control_state(self, state: ControlState) -> None:
        self.control = state

    async def close(self) -> None:
        return None


class QuietAlerts:
    """`ports.Alerts`: a backtest notifies no one."""

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        return None
