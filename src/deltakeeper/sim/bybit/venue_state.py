"""The Bybit venue's state and markets: its markets by category and Bybit symbol, the wall-clock stamps of
simulated events, the listeners of private pushes and quotes, the market statistics and funding-rate history
kept from the quotes, and the records Bybit keeps beside the engine (order attributes, executions, the
transaction log, position books), which `order_desk` and `account_books` fill in."""

from __future__ import annotations

import math
import random
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import OrderState, Quote
from deltakeeper.sim.bybit.faults import Faults
from deltakeeper.sim.bybit.protocol import CATEGORIES, PARAM_ERROR, BybitError, bybit_symbol, category_of
from deltakeeper.sim.bybit.records import Execution, LedgerEntry, MarketStats, OrderMeta, PositionBook
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.venue_common import funding_now, stamp_ms, to_ms, usd_price

PrivateListener = Callable[[str, str, list[dict[str, Any]]], None]
"""(api key, topic, data items)"""

REST_ARRIVALS_KEPT = 1000


class VenueState:
    """What the venue holds and every part of it reads: markets, clocks, listeners, and Bybit's records."""

    def __init__(
        self,
        engine: SimEngine,
        clock: SimClock,
        credentials: Mapping[str, str],
        faults: Faults,
        *,
        allow_withdraw: bool = False,
        seed: int = 0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.credentials = dict(credentials)
        self.faults = faults
        self.allow_withdraw = allow_withdraw
        self.margin_mode = "REGULAR_MARGIN"
        """`/v5/account/info`'s marginMode: REGULAR_MARGIN, PORTFOLIO_MARGIN or ISOLATED_MARGIN."""
        self.launch_ms = self.stamp_ms(clock.now())
        self.markets: dict[tuple[str, str], Instrument] = {}
        self.ids: dict[str, tuple[str, str]] = {}
        """ccxt symbol -> (category, Bybit symbol)"""
        for instrument in engine.instruments.values():
            category = category_of(instrument)
            if category is not None:
                self.markets[(category, bybit_symbol(instrument))] = instrument
                self.ids[instrument.symbol] = (category, bybit_symbol(instrument))
        self.private_listeners: list[PrivateListener] = []
        self.quote_listeners: list[Callable[[Quote], None]] = []
        self.stats: dict[str, MarketStats] = defaultdict(MarketStats)
        self.funding_history: dict[str, list[tuple[int, Decimal]]] = defaultdict(list)
        self.book_updates: dict[str, int] = defaultdict(int)
        self.rest_arrivals: deque[float] = deque(maxlen=REST_ARRIVALS_KEPT)
        """The event loop's monotonic time of each REST request's arrival, the latest ones."""
        self.api_calls: dict[tuple[str, str], deque[int]] = defaultdict(deque)
        """(API key, path) -> wall times in ms of its requests in the current rate-limit window."""
        self._rng = random.Random(seed)
        self._seq = 0
        self._meta: dict[str, OrderMeta] = {}
        self._pending: OrderMeta | None = None
        self._refused_post_only: dict[str, list[OrderState]] = defaultdict(list)
        self._link_ids: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._executions: dict[str, list[Execution]] = defaultdict(list)
        self._ledger: dict[str, list[LedgerEntry]] = defaultdict(list)
        self._books: dict[tuple[str, str], PositionBook] = {}
        self._pushed_positions: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        """The last pushed (size, entry, realised PnL, option mark) of each position: an option position is
        pushed again when its mark moves, with its greeks."""
        self._funding_slots: dict[str, int] = {}

    # time and markets

    def stamp_ms(self, sim_time: datetime) -> int:
        """The timestamp, in ms since the epoch on the wall clock, of what happens at simulated `sim_time`."""
        return stamp_ms(self.clock, sim_time)

    def now_ms(self) -> int:
        return self.stamp_ms(self.clock.now())

    def market(self, category: str, symbol: object) -> Instrument:
        if category not in CATEGORIES:
            raise BybitError(PARAM_ERROR, f"Illegal category: {category}")
        instrument = self.markets.get((category, str(symbol)))
        if instrument is None:
            raise BybitError(PARAM_ERROR, "Not supported symbols")
        return instrument

    def listed(self, category: str) -> list[tuple[str, Instrument]]:
        """The markets of `category` by Bybit symbol; an option or a dated future until its expiry."""
        now = self.clock.now()
        return [(symbol, i) for (cat, symbol), i in sorted(self.markets.items())
                if cat == category and (i.expiry is None or i.expiry > now)]

    def funding_now(self, instrument: Instrument) -> tuple[Decimal, int] | None:
        """(current funding rate, next funding time in ms) of a perpetual."""
        return funding_now(self.engine, self.clock, instrument)

    def open_interest(self, instrument: Instrument) -> Decimal:
        total = ZERO
        for key in self.credentials:
            if self.engine.has_account(key):
                total += sum((abs(p.contracts) for p in self.engine.positions(key)
                              if p.symbol == instrument.symbol), ZERO)
        return total * (1 if instrument.inverse else instrument.contract_size)

    def usd_price(self, coin: str) -> Decimal | None:
        return usd_price(self.engine, coin)

    # pushes and quotes

    def _push(self, account: str, topic: str, data: list[dict[str, Any]]) -> None:
        for listener in self.private_listeners:
            listener(account, topic, data)

    def _on_quote(self, quote: Quote) -> None:
        ms = to_ms(quote.ts)
        self.stats[quote.symbol].on_price(ms, quote.mid)
        self.book_updates[quote.symbol] += 1
        interval = self.engine.instruments[quote.symbol].funding_interval_secs
        if interval:
            slot = math.floor(quote.ts.timestamp() / interval)
            last = self._funding_slots.get(quote.symbol)
            if last is None or slot > last:
                self._funding_slots[quote.symbol] = slot
                rate = quote.funding_rate
                if rate is None:
                    rate = self.engine.default_funding_rate
                if last is not None:
                    for boundary in range(last + 1, slot + 1):
                        boundary_ms = self.stamp_ms(datetime.fromtimestamp(boundary * interval, UTC))
                        self.funding_history[quote.symbol].append((boundary_ms, rate))
        for listener in self.quote_listeners:
            listener(quote)
