"""What comes in from the exchange: quotes and reads of them, account snapshots, fills, funding payments
and order updates. `Ingest` is the only writer of `MarketState` and journals fills and funding once each
(keyed by the exchange's ids); it decides nothing (the Runner, or a backtest, asks the DecisionCycle
after it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

import structlog

from deltakeeper.app.figures import figure
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.trading_state import Counters
from deltakeeper.domain.errors import ForeignOrder
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.risk import LiquidationHandler
from deltakeeper.domain.usd import to_usd
from deltakeeper.ports import Clock, Journal

log = structlog.get_logger("deltakeeper.rebalance")

ForeignOrderHandler = Callable[[ForeignOrder], Awaitable[None]]


class DailyTraded:
    """The notional traded since 00:00 UTC of the clock's day (`DK_MAX_DAILY_TRADED_USD`)."""

    def __init__(self) -> None:
        self._day: datetime | None = None
        self._usd = Decimal(0)

    def today_usd(self, now: datetime) -> Decimal:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if day != self._day:
            self._day, self._usd = day, Decimal(0)
        return self._usd

    def add(self, notional_usd: Decimal, now: datetime) -> None:
        self._usd = self.today_usd(now) + notional_usd

    async def load(self, journal: Journal, now: datetime) -> None:
        """At the start: what the journal has of today."""
        self.today_usd(now)
        assert self._day is not None
        self._usd = await journal.traded_usd_since(self._day)


class Ingest:
    def __init__(
        self,
        state: MarketState,
        journal: Journal,
        clock: Clock,
        counters: Counters,
        daily: DailyTraded,
        *,
        on_liquidation: LiquidationHandler | None = None,
        on_foreign_order: ForeignOrderHandler | None = None,
    ) -> None:
        self.state = state
        self.journal = journal
        self.clock = clock
        self.counters = counters
        self.daily = daily
        self.on_liquidation = on_liquidation
        """Called with each new fill the exchange marks as a liquidation (app/margin_watch.py)."""
        self.on_foreign_order = on_foreign_order
        """Another trader's order with our prefix (app/reconciliation.py `halt_on_foreign_order`)."""
        self._unpriced_logged: set[str] = set()
        """Currencies whose amounts had no USD price (logged once each)."""
        self._quoted: dict[str, asyncio.Event] = {}
        self._stopping = False

    # -- the market ----------------------------------------------------------------------------

    def on_quote(self, quote: Quote) -> bool:
        """Apply a quote the price gate accepts (`MarketState.on_quote`); returns whether it was."""
        applied = self.state.on_quote(quote)
        if applied:
            self._wake(quote.symbol)
        return applied

    def on_first_read(self, read: Quote) -> None:
        self.state.on_first_read(read)

    def on_read(self, read: Quote) -> bool:
        applied = self.state.on_read(read)
        if applied:
            self._wake(read.symbol)
        return applied

    def on_external(self, asset: str, coin: Decimal) -> None:
        """Coins of `asset` held outside the exchange changed (a backtest's exposure model)."""
        external = self.state.external
        assert isinstance(external, dict), "external holdings given as a dict can change"
        external[asset] = coin

    async def next_quote(self, symbol: str, after: datetime, timeout_secs: float) -> None:
        """Wait (at most `timeout_secs`) for a quote on `symbol` stamped later than `after`; at once while
        stopping (`wake_all`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_secs
        while True:
            quote = self.state.quotes.get(symbol)
            remaining = deadline - loop.time()
            if self._stopping or (quote is not None and quote.ts > after) or remaining <= 0:
                return
            event = self._quoted.setdefault(symbol, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return

    def awaits_quote(self, symbol: str) -> bool:
        """Whether `next_quote` waiters on `symbol` are still waiting (no quote has come since)."""
        return symbol in self._quoted

    def wake_all(self) -> None:
        """Release every `next_quote` waiter, now and from now on (a stop)."""
        self._stopping = True
        for symbol in list(self._quoted):
            self._wake(symbol)

    def _wake(self, symbol: str) -> None:
        event = self._quoted.pop(symbol, None)
        if event is not None:
            event.set()

    # -- the account ---------------------------------------------------------------------------

    def on_account(self, snapshot: AccountSnapshot) -> bool:
        """Take a strictly newer account snapshot; returns whether it was."""
        return self.state.on_account(snapshot)

    async def on_fill(self, fill: Fill) -> None:
        if await self.journal.record_fills([fill]):
            if fill.traded:  # a liquidation or a delivery is the exchange's close, not our trading
                self.daily.add(fill.notional_usd, self.clock.now())
            self.counters.fills += 1
            if (fee_usd := self.usd(fill.fee, fill.fee_currency)) is not None:
                self.counters.fees_usd += fee_usd
            log.info(
                "fill_recorded",
                symbol=fill.symbol,
                trade_id=fill.trade_id,
                client_order_id=fill.client_order_id,
                amount=str(fill.amount_contracts),
                price=str(fill.price),
                kind=fill.kind.value,
            )
            if fill.liquidation and self.on_liquidation is not None:
                await self.on_liquidation(fill)

    async def on_funding(self, payment: FundingPayment) -> None:
        if await self.journal.record_funding([payment]):
            if (funding_usd := self.usd(payment.amount, payment.currency)) is not None:
                self.counters.funding_usd += funding_usd
            log.info(
                "funding_recorded",
                symbol=payment.symbol,
                amount=str(payment.amount),
                currency=payment.currency,
                rate=figure(payment.rate),
            )

    async def on_order(self, order: OrderState) -> None:
        try:
            await self.journal.update_order(order)
        except ForeignOrder as found:
            if self.on_foreign_order is None:
                raise
            await self.on_foreign_order(found)

    def usd(self, amount: Decimal, currency: str) -> Decimal | None:
        """`amount` of `currency` in USD at its price now (`domain.usd.to_usd`); None when the coin has no
        price, logged (`amount_unpriced`) once per currency: never counted as 0."""
        in_usd = to_usd(amount, currency, self.state.price_usd)
        if in_usd is None and currency not in self._unpriced_logged:
            self._unpriced_logged.add(currency)
            log.warning("amount_unpriced", currency=currency, amount=str(amount))
        return in_usd
