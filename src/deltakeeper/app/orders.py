"""The order life cycle of a decided hedge (DESIGN.md 6): send a journaled order, settle it by client id,
and journal the decision's next order (a slice, or a post-only order's market fallback).

The Hedger (`app/rebalance.py`) decides and plans (`app/execution.py`); `OrderRunner` executes. What it
asks of the deciding side is small: the risk check of each further order (`check`, which also moves the
trading state), whether trading is halted (`halted`), and where an order's end is counted (`order_done`)
and alerts go (`alert`). It keeps the instruments in flight (shared with the Hedger, one order each) and
the back-off after refused orders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import structlog

from deltakeeper.app.execution import ExecutionPlan, min_slice_contracts, touch_price
from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.errors import OrderOutcomeUnknown, OrderRejected, RateLimited
from deltakeeper.domain.orders import OrderIntent, OrderRequest, OrderState, OrderStatus, Side
from deltakeeper.domain.records import OrderRecord
from deltakeeper.domain.risk import RiskOutcome
from deltakeeper.ports import Clock, Exchange, Journal

log = structlog.get_logger("deltakeeper.rebalance")  # the Hedger's log: its orders are part of it

RESEND_LIMIT = 3
SETTLE_POLL_SECS = 0.2
REJECT_BACKOFF_SECS = 1.0
REJECT_BACKOFF_MAX_SECS = 60.0
"""After a refused order no new order goes to that instrument for this long, doubling with each refusal
in a row (up to the maximum) and cleared by a fill: an exchange that refuses everything is not hammered."""


class OrderRunner:
    """Sends and settles the orders of checked decisions, one at a time per instrument."""

    def __init__(
        self,
        exchange: Exchange,
        journal: Journal,
        clock: Clock,
        state: MarketState,
        *,
        order_timeout_secs: float,
        post_only_timeout_secs: float,
        in_flight: dict[str, str],
        check: Callable[[OrderIntent, datetime], RiskOutcome],
        halted: Callable[[], bool],
        order_done: Callable[[OrderStatus], None],
        alert: Callable[[str, str, str, str], None],
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self.clock = clock
        self.state = state
        self.order_timeout_secs = order_timeout_secs
        self.post_only_timeout_secs = post_only_timeout_secs
        self.in_flight = in_flight
        """Symbol -> the client id of its order in flight (the Hedger's)."""
        self.check = check
        self.halted = halted
        self.order_done = order_done
        self.alert = alert
        self.draining = False
        """Shutting down: no further slice or fallback order."""
        self._backoff: dict[str, tuple[float, float]] = {}
        """Symbol -> (monotonic time until which no order is sent, the delay that set it)."""

    def backing_off(self, symbol: str) -> bool:
        backoff = self._backoff.get(symbol)
        return backoff is not None and time.monotonic() < backoff[0]

    def filled(self, symbol: str) -> None:
        """A decision on `symbol` filled something: its back-off is over."""
        self._backoff.pop(symbol, None)

    def local_state(self, request: OrderRequest, status: OrderStatus, reason: str) -> OrderState:
        """The state of an order the exchange did not report: not sent, refused, or of unknown outcome."""
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

    async def run(self, request: OrderRequest) -> OrderState | None:
        """Send one journaled order and settle it (a post-only order is cancelled after its timeout), then
        refresh the account. None when it was not sent (halted since) or failed."""
        self.in_flight[request.symbol] = request.client_order_id
        if self.halted():  # halted since the decision: never send
            await self.journal.update_order(
                self.local_state(request, OrderStatus.CANCELED, "halted before it was sent")
            )
            self.order_done(OrderStatus.CANCELED)
            return None
        state = await self._send(request)
        if state is None:
            return None
        timeout = self.post_only_timeout_secs if request.post_only else None
        state = await self._settle(request, state, timeout)
        self.order_done(state.status)
        await self._refresh_account()
        return state

    async def next_order(
        self,
        asset: str,
        plan: ExecutionPlan,
        order_no: int,
        amount: Decimal,
        price_usd: Decimal,
        fallback: bool = False,
    ) -> OrderRequest | None:
        """The decision's next order (a slice on a newer quote, or a post-only order's market fallback),
        checked against the risk limits again and journaled; None when nothing more is to be sent.
        `price_usd`: the asset's price the decision was taken at (the journal's reference)."""
        symbol = plan.symbol
        hedge = self.state.instruments[symbol]
        if not fallback:
            await self._newer_quote(symbol, self.state.quotes[symbol].ts)
        if self.draining:
            log.warning("order_not_sent", decision_id=plan.decision_id, symbol=symbol, reason="shutting down")
            return None
        quote = self.state.quotes[symbol]
        touch = quote.ask if plan.side is Side.BUY else quote.bid
        amount = hedge.round_contracts(amount, toward_zero=True)
        if amount <= 0 or (fallback and amount < min_slice_contracts(hedge, touch)):
            log.info("order_too_small", decision_id=plan.decision_id, symbol=symbol, amount=str(amount))
            return None
        now = self.clock.now()
        outcome = self.check(OrderIntent(symbol, plan.side, amount, touch, plan.reduce_only), now)
        if outcome.intent is None:
            log.warning("order_not_sent", decision_id=plan.decision_id, symbol=symbol,
                        reason=",".join(outcome.notes))
            return None
        passive = touch_price(plan.side, quote.bid, quote.ask)
        request = replace(
            plan.request(order_no, outcome.intent.amount_contracts, passive, fallback=fallback),
            reduce_only=outcome.intent.reduce_only,
        )
        await self.journal.record_order(OrderRecord.pending(request, plan.decision_id, now, price_usd, asset))
        return request

    async def _newer_quote(self, symbol: str, after: datetime) -> None:
        """Wait (at most the order timeout) for a quote on `symbol` newer than `after`."""
        deadline = time.monotonic() + self.order_timeout_secs
        while time.monotonic() < deadline and not self.draining:
            quote = self.state.quotes.get(symbol)
            if quote is not None and quote.ts > after:
                return
            await asyncio.sleep(SETTLE_POLL_SECS / 4)

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
                if request.post_only:  # it would have taken: the market fallback sends it
                    log.info("post_only_refused", client_order_id=request.client_order_id, reason=str(exc))
                    refused = self.local_state(request, OrderStatus.REJECTED, str(exc))
                    await self.journal.update_order(refused)
                    return refused
                await self._fail(request, str(exc))
                return None
            except OrderOutcomeUnknown as exc:
                log.warning("order_outcome_unknown", client_order_id=request.client_order_id, error=str(exc))
                self.alert(
                    "warning",
                    "order_outcome_unknown",
                    f"order {request.client_order_id}: outcome unknown, settling by client id",
                    request.symbol,
                )
                unknown = self.local_state(request, OrderStatus.UNKNOWN, str(exc))
                await self.journal.update_order(unknown)
                return unknown
        return None

    async def _fail(self, request: OrderRequest, reason: str) -> None:
        self.order_done(OrderStatus.REJECTED)
        log.error("order_rejected", client_order_id=request.client_order_id, reason=reason)
        await self.journal.update_order(self.local_state(request, OrderStatus.REJECTED, reason))
        rejected = f"order {request.client_order_id} rejected: {reason}"
        self.alert("error", "order_rejected", rejected, request.symbol)
        previous = self._backoff.get(request.symbol)
        delay = min(previous[1] * 2, REJECT_BACKOFF_MAX_SECS) if previous else REJECT_BACKOFF_SECS
        self._backoff[request.symbol] = (time.monotonic() + delay, delay)
        log.warning("order_backoff", symbol=request.symbol, secs=delay)

    async def _settle(
        self, request: OrderRequest, state: OrderState, timeout_secs: float | None = None
    ) -> OrderState:
        """Poll the order by client id until it is final; cancel it if it outlives the timeout (the order
        timeout unless given). While stopping (`draining`), an order still not final after its cancel is
        left to the next start's reconciliation, so that a stop does not wait on an unreachable exchange."""
        timeout = self.order_timeout_secs if timeout_secs is None else timeout_secs
        deadline = time.monotonic() + timeout
        lost_after = time.monotonic() + self.order_timeout_secs
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
            elif state.status is OrderStatus.UNKNOWN and time.monotonic() > lost_after:
                # The exchange never saw it: the request did not arrive.
                state = self.local_state(request, OrderStatus.REJECTED, "not found on the exchange")
                await self.journal.update_order(state)
            if not state.status.is_final and time.monotonic() > deadline:
                if canceled and self.draining:
                    # Stopping: the next start's reconciliation settles it by client id.
                    log.warning("order_left_unsettled", client_order_id=request.client_order_id,
                                status=state.status.value)
                    break
                if not canceled:
                    canceled = True
                    try:
                        await self.exchange.cancel_order(request.symbol, request.client_order_id)
                    except Exception as exc:
                        log.warning("cancel_failed", client_order_id=request.client_order_id, error=str(exc))
        return state

    async def _refresh_account(self) -> None:
        self.state.on_account(await self.exchange.fetch_account())
