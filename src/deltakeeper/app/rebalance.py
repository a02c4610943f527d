"""The rebalance cycle: recompute delta, decide, check risk, journal, execute (DESIGN.md 5 and 6)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from deltakeeper.app.market_state import MarketState
from deltakeeper.domain import risk
from deltakeeper.domain.errors import OrderOutcomeUnknown, OrderRejected, RateLimited
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.instruments import is_stable
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    client_order_id,
)
from deltakeeper.domain.policy import AssetPolicy, AssetView, Decision, decide
from deltakeeper.domain.records import AccountSnapshot, DecisionRecord, OrderRecord
from deltakeeper.ports import Alerts, Clock, Exchange, Journal

log = structlog.get_logger("deltakeeper.rebalance")

RESEND_LIMIT = 3
SETTLE_POLL_SECS = 0.2
REJECT_BACKOFF_SECS = 1.0
REJECT_BACKOFF_MAX_SECS = 60.0
"""After a refused order no new order goes to that instrument for this long, doubling with each refusal
in a row (up to the maximum) and cleared by a fill: an exchange that refuses everything is not hammered."""


@dataclass(frozen=True, slots=True)
class HedgerOptions:
    limits: risk.RiskLimits
    order_timeout_secs: float
    state_clear_secs: float
    send_orders: bool = True
    """False in shadow mode: decisions are journaled, nothing is sent."""


@dataclass
class Counters:
    """What the service did since it started, for the metrics."""

    orders: dict[str, int] = field(default_factory=dict)
    """Orders by final status."""
    fills: int = 0
    fees_usd: Decimal = Decimal(0)
    """Fees paid: a stable fee currency as it is, a coin fee at that asset's price."""
    funding_usd: Decimal = Decimal(0)
    """Net funding, received positive."""
    errors: int = 0

    def order_done(self, status: OrderStatus) -> None:
        self.orders[status.value] = self.orders.get(status.value, 0) + 1


def new_decision_id(_counter: itertools.count[int] = itertools.count()) -> int:
    """Unique across restarts and databases: wall-clock milliseconds, then a sequence number."""
    return time.time_ns() // 1_000_000 * 4096 + next(_counter) % 4096


class Hedger:
    """Keeps each asset's delta inside its band. At most one order in flight per instrument: the next
    decision on it waits until the order is final, its fills are journaled and the account refreshed."""

    def __init__(
        self,
        exchange: Exchange,
        journal: Journal,
        clock: Clock,
        alerts: Alerts,
        state: MarketState,
        policies: dict[str, AssetPolicy],
        options: HedgerOptions,
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self.clock = clock
        self.alerts = alerts
        self.state = state
        self.policies = policies
        self.options = options
        self.trading = risk.StateMachine()
        self.in_flight: dict[str, str] = {}
        self.last_reason: dict[str, str] = {}
        self.last_decision: dict[str, DecisionRecord] = {}
        self.traded_today_usd = Decimal(0)
        self.counters = Counters()
        self._day: datetime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._quiet = 0
        """While above 0 no decision is taken (a periodic reconciliation compares the books)."""
        self._backoff: dict[str, tuple[float, float]] = {}
        """Symbol -> (monotonic time until which no order is sent, the delay that set it)."""
        self._by_price_symbol: dict[str, list[str]] = {}
        for asset, policy in policies.items():
            for symbol in {policy.hedge_symbol, state.price_symbols.get(asset, policy.hedge_symbol)}:
                self._by_price_symbol.setdefault(symbol, []).append(asset)

    def symbols(self) -> list[str]:
        """Every symbol the bot streams quotes for: the hedges and the markets that price the assets."""
        return sorted({*self.state.price_symbols.values(), *(p.hedge_symbol for p in self.policies.values())})

    # -- inputs -------------------------------------------------------------------------------

    async def on_quote(self, quote_symbol: str) -> None:
        for asset in self._by_price_symbol.get(quote_symbol, ()):
            await self.evaluate(asset, scheduled=False)

    async def on_account(self, snapshot: AccountSnapshot) -> None:
        if self.state.on_account(snapshot):
            for asset in self.policies:
                await self.evaluate(asset, scheduled=False)

    async def on_fill(self, fill: Fill) -> None:
        if await self.journal.record_fills([fill]):
            self._count_traded(fill.notional_usd)
            self.counters.fills += 1
            self.counters.fees_usd += self.usd(fill.fee, fill.fee_currency)
            log.info(
                "fill_recorded",
                symbol=fill.symbol,
                trade_id=fill.trade_id,
                client_order_id=fill.client_order_id,
                amount=str(fill.amount_contracts),
                price=str(fill.price),
            )

    async def on_funding(self, payment: FundingPayment) -> None:
        if await self.journal.record_funding([payment]):
            self.counters.funding_usd += self.usd(payment.amount, payment.currency)
            log.info(
                "funding_recorded",
                symbol=payment.symbol,
                amount=str(payment.amount),
                currency=payment.currency,
                rate=str(payment.rate),
            )

    async def on_order(self, order: OrderState) -> None:
        await self.journal.update_order(order)

    # -- the cycle ----------------------------------------------------------------------------

    async def evaluate_all(self) -> dict[str, AssetDelta]:
        """The scheduled recompute: every asset, every decision journaled."""
        deltas = self.state.deltas()
        for asset in self.policies:
            await self.evaluate(asset, scheduled=True, deltas=deltas)
        return deltas

    async def evaluate(
        self, asset: str, scheduled: bool, deltas: dict[str, AssetDelta] | None = None
    ) -> None:
        policy = self.policies[asset]
        symbol = policy.hedge_symbol
        if symbol in self.in_flight or self._quiet or self._backing_off(symbol):
            return
        record, request = self._decide(asset, policy, self.state.deltas() if deltas is None else deltas)
        if record is None:
            return
        if request is not None:
            self.in_flight[symbol] = request.client_order_id  # before any await: one order per instrument
        try:
            if scheduled or request is not None or self.last_reason.get(asset) != record.reason:
                await self.journal.record_decision(record)
            self.last_reason[asset] = record.reason
            self.last_decision[asset] = record
            if scheduled or request is not None:
                log.info(
                    "rebalance_cycle",
                    asset=asset,
                    delta_coin=str(record.delta_coin),
                    target_coin=str(record.target_coin),
                    band_coin=str(record.band_coin),
                    reason=record.reason,
                    state=record.trading_state,
                    order=request.client_order_id if request else None,
                )
            if request is None:
                return
            await self.journal.record_order(
                OrderRecord.pending(request, record.decision_id, self.clock.now(), record.price_usd, asset)
            )
        except BaseException:
            if request is not None:
                self.in_flight.pop(symbol, None)
            raise
        if not self.options.send_orders:
            await self.journal.update_order(self._local_state(request, OrderStatus.CANCELED, "shadow mode"))
            self.in_flight.pop(symbol, None)
            return
        task = asyncio.create_task(self._execute(asset, request, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _decide(
        self, asset: str, policy: AssetPolicy, deltas: dict[str, AssetDelta]
    ) -> tuple[DecisionRecord | None, OrderRequest | None]:
        hedge = self.state.instruments[policy.hedge_symbol]
        quote = self.state.quotes.get(policy.hedge_symbol)
        price = self.state.price_usd(asset)
        if quote is None or price is None or self.state.account is None:
            return None, None  # nothing to decide on yet: no record, no order
        delta = deltas.get(asset) or AssetDelta(asset, Decimal(0), Decimal(0), Decimal(0))
        now = self.clock.now()
        decision = decide(
            AssetView(asset, delta.delta_coin, delta.gross_coin, price, hedge, quote.mark), policy
        )
        decision_id = new_decision_id()
        if decision.intent is None:
            return self._record(decision_id, now, delta, decision, decision.reason), None
        intent = decision.intent
        touch = quote.ask if intent.side.sign > 0 else quote.bid
        position = next(
            (p.contracts for p in self.state.account.positions if p.symbol == hedge.symbol), Decimal(0)
        )
        ctx = risk.RiskContext(
            quote_age_secs=self.state.quote_age_secs(hedge.symbol, self.clock.speed, now.timestamp()),
            mark_price=quote.mark,
            position_contracts=position,
            traded_today_usd=self._traded_today(now),
            state=self.trading.state,
        )
        outcome = risk.check(replace(intent, reference_price=touch), hedge, ctx, self.options.limits)
        self._observe_state(frozenset(outcome.notes), now)
        detail = ",".join(outcome.notes)
        if outcome.intent is None:
            return self._record(decision_id, now, delta, decision, detail or "denied"), None
        sent = outcome.intent
        request = OrderRequest(
            client_order_id(decision_id),
            sent.symbol,
            sent.side,
            sent.amount_contracts,
            OrderType.MARKET,
            reduce_only=sent.reduce_only,
        )
        cost = hedge.notional_usd(sent.amount_contracts, touch) * hedge.taker_fee_rate
        record = replace(
            self._record(decision_id, now, delta, decision, "rebalance", detail),
            symbol=sent.symbol,
            side=sent.side,
            amount_contracts=sent.amount_contracts,
            est_cost_usd=cost,
        )
        return record, request

    def _record(
        self,
        decision_id: int,
        now: datetime,
        delta: AssetDelta,
        decision: Decision,
        reason: str,
        detail: str = "",
    ) -> DecisionRecord:
        return DecisionRecord(
            decision_id=decision_id,
            ts=now,
            asset=delta.asset,
            delta_coin=delta.delta_coin,
            delta_usd=delta.delta_usd,
            target_coin=decision.target_coin,
            band_coin=decision.band_coin,
            price_usd=decision.price_usd,
            reason=reason,
            trading_state=self.trading.state.value,
            detail=detail,
        )

    def _observe_state(self, notes: frozenset[str], now: datetime) -> None:
        before = self.trading.state
        self.trading = self.trading.observe(notes, now, self.options.state_clear_secs)
        if self.trading.state is not before:
            log.warning(
                "trading_state_changed",
                before=before.value,
                after=self.trading.state.value,
                cause=self.trading.cause,
            )
            self._spawn_alert(
                "warning",
                "trading_state_changed",
                f"trading state {before.value} -> {self.trading.state.value} "
                f"({self.trading.cause or 'cleared'})",
            )

    # -- execution ----------------------------------------------------------------------------

    async def _execute(self, asset: str, request: OrderRequest, decision: DecisionRecord) -> None:
        """Send once (resending only after a definite refusal, with the same client id), settle the
        outcome, journal fills, refresh the account, then free the instrument."""
        started = self.clock.now()
        try:
            if self.trading.state is risk.TradingState.HALTED:  # halted since the decision: never send
                await self.journal.update_order(
                    self._local_state(request, OrderStatus.CANCELED, "halted before it was sent")
                )
                self.counters.order_done(OrderStatus.CANCELED)
                return
            state = await self._send(request)
            if state is not None:
                state = await self._settle(request, state)
                self.counters.order_done(state.status)
                await self._backfill_fills(request, started)
                await self._refresh_account()
                log.info(
                    "rebalance_completed",
                    asset=asset,
                    client_order_id=request.client_order_id,
                    status=state.status.value,
                    filled=str(state.filled_contracts),
                )
                if state.filled_contracts > 0:
                    self._backoff.pop(request.symbol, None)
                    self._spawn_alert("info", "rebalance_completed", self._completed(decision, state))
                else:
                    self._spawn_alert(
                        "warning",
                        "order_not_filled",
                        f"order {request.client_order_id} on {request.symbol} ended "
                        f"{state.status.value} with nothing filled"
                        + (f": {state.reject_reason}" if state.reject_reason else ""),
                    )
        except Exception as exc:  # an order task must never die silently
            self.counters.errors += 1
            log.exception("order_task_failed", client_order_id=request.client_order_id, error=str(exc))
            self._spawn_alert("error", "order_failed", f"order {request.client_order_id} failed: {exc}")
        finally:
            self.in_flight.pop(request.symbol, None)
        await self.evaluate(asset, scheduled=True)

    def _completed(self, decision: DecisionRecord, state: OrderState) -> str:
        """The `rebalance_completed` alert: what was traded, and the delta before and after."""
        asset = decision.asset
        after = self.state.deltas().get(asset)
        verb = "bought" if state.side.sign > 0 else "sold"
        price = f" at {short(state.average_price)}" if state.average_price is not None else ""
        partly = "" if state.status is OrderStatus.FILLED else f" ({state.status.value})"
        delta_after = short(after.delta_coin) if after is not None else "?"
        return (
            f"{asset}: {verb} {short(state.filled_contracts)} {state.symbol}{price}{partly}; delta "
            f"{short(decision.delta_coin)} -> {delta_after} {asset} "
            f"(target {short(decision.target_coin)} ± {short(decision.band_coin)})"
        )

    async def _send(self, request: OrderRequest) -> OrderState | None:
        for attempt in range(RESEND_LIMIT + 1):
            try:
                state = await self.exchange.place_order(request)
                log.info(
                    "order_submitted",
                    client_order_id=request.client_order_id,
                    symbol=request.symbol,
                    side=request.side.value,
                    amount=str(request.amount_contracts),
                )
                await self.journal.update_order(state)
                return state
            except RateLimited:
                if attempt == RESEND_LIMIT:
                    await self._fail(request, "rate limited: not sent")
                    return None
                await asyncio.sleep(0.5 * 2**attempt)
            except OrderRejected as exc:
                await self._fail(request, str(exc))
                return None
            except OrderOutcomeUnknown as exc:
                log.warning("order_outcome_unknown", client_order_id=request.client_order_id, error=str(exc))
                self._spawn_alert(
                    "warning",
                    "order_outcome_unknown",
                    f"order {request.client_order_id}: outcome unknown, settling by client id",
                )
                unknown = self._local_state(request, OrderStatus.UNKNOWN, str(exc))
                await self.journal.update_order(unknown)
                return unknown
        return None

    async def _fail(self, request: OrderRequest, reason: str) -> None:
        self.counters.order_done(OrderStatus.REJECTED)
        log.error("order_rejected", client_order_id=request.client_order_id, reason=reason)
        await self.journal.update_order(self._local_state(request, OrderStatus.REJECTED, reason))
        self._spawn_alert("error", "order_rejected", f"order {request.client_order_id} rejected: {reason}")
        previous = self._backoff.get(request.symbol)
        delay = min(previous[1] * 2, REJECT_BACKOFF_MAX_SECS) if previous else REJECT_BACKOFF_SECS
        self._backoff[request.symbol] = (time.monotonic() + delay, delay)
        log.warning("order_backoff", symbol=request.symbol, secs=delay)

    def _backing_off(self, symbol: str) -> bool:
        backoff = self._backoff.get(symbol)
        return backoff is not None and time.monotonic() < backoff[0]

    async def _settle(self, request: OrderRequest, state: OrderState) -> OrderState:
        """Poll the order by client id until it is final; cancel it if it outlives the timeout."""
        deadline = time.monotonic() + self.options.order_timeout_secs
        canceled = False
        while not state.status.is_final:
            await asyncio.sleep(SETTLE_POLL_SECS)
            try:
                found = await self.exchange.fetch_order(request.symbol, request.client_order_id)
            except Exception as exc:
                log.warning("order_lookup_failed", client_order_id=request.client_order_id, error=str(exc))
                found = None
            if found is not None:
                state = found
                await self.journal.update_order(state)
            elif state.status is OrderStatus.UNKNOWN and time.monotonic() > deadline:
                # The exchange never saw it: the request did not arrive.
                state = self._local_state(request, OrderStatus.REJECTED, "not found on the exchange")
                await self.journal.update_order(state)
            if not state.status.is_final and time.monotonic() > deadline and not canceled:
                canceled = True
                try:
                    await self.exchange.cancel_order(request.symbol, request.client_order_id)
                except Exception as exc:
                    log.warning("cancel_failed", client_order_id=request.client_order_id, error=str(exc))
        return state

    async def _backfill_fills(self, request: OrderRequest, since: datetime) -> None:
        fills = await self.exchange.fetch_fills(since - timedelta(minutes=1))
        ours = [f for f in fills if f.client_order_id == request.client_order_id]
        for fill in ours:
            await self.on_fill(fill)

    async def _refresh_account(self) -> None:
        self.state.on_account(await self.exchange.fetch_account())

    # -- housekeeping -------------------------------------------------------------------------

    def _traded_today(self, now: datetime) -> Decimal:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if day != self._day:
            self._day, self.traded_today_usd = day, Decimal(0)
        return self.traded_today_usd

    def _count_traded(self, notional_usd: Decimal) -> None:
        self._traded_today(self.clock.now())
        self.traded_today_usd += notional_usd

    async def load_traded_today(self) -> None:
        now = self.clock.now()
        self._traded_today(now)
        assert self._day is not None
        self.traded_today_usd = await self.journal.traded_usd_since(self._day)

    def usd(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` of `currency` in USD: a stable coin as it is, a coin at its price (0 when unpriced)."""
        if is_stable(currency):
            return amount
        price = self.state.price_usd(currency)
        return amount * price if price is not None else Decimal(0)

    def _local_state(self, request: OrderRequest, status: OrderStatus, reason: str) -> OrderState:
        return OrderState(
            client_order_id=request.client_order_id,
            exchange_order_id="",
            symbol=request.symbol,
            side=request.side,
            amount_contracts=request.amount_contracts,
            filled_contracts=Decimal(0),
            status=status,
            ts=self.clock.now(),
            order_type=request.order_type,
            reject_reason=reason,
        )

    def _spawn_alert(self, level: str, event: str, message: str) -> None:
        task = asyncio.create_task(self.alerts.send(level, event, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def quiet(self, timeout_secs: float) -> AsyncIterator[bool]:
        """Take no new decision while inside; first wait (at most `timeout_secs`) for the orders in flight
        to end. Yields whether nothing is in flight, so that the books can be compared undisturbed."""
        self._quiet += 1
        try:
            deadline = time.monotonic() + timeout_secs
            while self.in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._tasks:  # the order tasks, and alerts (which end at once)
                    await asyncio.wait(list(self._tasks), timeout=min(remaining, SETTLE_POLL_SECS))
                else:  # an order being journaled: its task starts in a moment
                    await asyncio.sleep(min(remaining, SETTLE_POLL_SECS / 4))
            yield not self.in_flight
        finally:
            self._quiet -= 1

    async def drain(self) -> None:
        """Let in-flight orders settle (on shutdown); no new decision from now on."""
        self._quiet += 1
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def short(value: Decimal, places: int = 4) -> str:
    """A Decimal for people: at most `places` decimals, no trailing zeros, plain notation."""
    rounded = round(value, places).normalize()
    return format(rounded if rounded != 0 else Decimal(0), "f")
