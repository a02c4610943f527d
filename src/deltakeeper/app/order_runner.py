"""The order runner: the sole owner of the orders in flight (DESIGN.md 5: one hedge in flight per
instrument). It carries out a checked decision's plan (`app/execution.py`) as a task: the slices one
after another, each on a newer quote, and a post-only order's market fallback, each order journaled before
it is sent and final before the next (`app/orders.py` `OrderSender`). The instrument is free again only
once the account has been read after its last order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from deltakeeper.app.execution import ExecutionPlan, min_slice_contracts, touch_price
from deltakeeper.app.figures import short
from deltakeeper.app.ingest import Ingest
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.order_check import OrderCheck
from deltakeeper.app.orders import SETTLE_POLL_SECS, Basis, OrderSender, taking_price
from deltakeeper.domain.orders import OrderIntent, OrderRequest, OrderState, OrderStatus
from deltakeeper.domain.records import DecisionRecord, OrderRecord

log = structlog.get_logger("deltakeeper.rebalance")

AfterOrders = Callable[[], Awaitable[object]]
"""What a decision's task does once its orders are done and the instrument free: the next decision."""


class OrderRunner:
    def __init__(self, sender: OrderSender, ingest: Ingest, check: OrderCheck) -> None:
        self.sender = sender
        self.ingest = ingest
        self.check = check
        self.state: MarketState = sender.state
        self.in_flight: dict[str, str] = {}
        """Symbol -> the client id of its order in flight (or being journaled). Written only here."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting_quote: dict[asyncio.Task[None], str] = {}
        """Order task -> the symbol it waits for a newer quote on (a slice): idle until one comes."""
        self._quiet = 0
        """While above 0 no decision is taken (a periodic reconciliation compares the books)."""

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """The decisions' order tasks running now."""
        return frozenset(self._tasks)

    def busy(self, symbol: str) -> bool:
        """Whether no decision may be taken on `symbol` now: an order in flight, the runner quiet, or
        the instrument backing off after a refusal."""
        return symbol in self.in_flight or self._quiet > 0 or self.sender.backing_off(symbol)

    @contextlib.contextmanager
    def claim(self, symbol: str, client_order_id: str) -> Iterator[None]:
        """Hold `symbol` in flight while a decision journals its first order (before any await: one order
        per instrument); released if that fails."""
        self.in_flight[symbol] = client_order_id
        try:
            yield
        except BaseException:
            self.in_flight.pop(symbol, None)
            raise

    def release(self, symbol: str, client_order_id: str) -> None:
        """Free `symbol` claimed for `client_order_id` that is not going to be sent after all."""
        if self.in_flight.get(symbol) == client_order_id:
            del self.in_flight[symbol]

    def submit(self, asset: str, plan: ExecutionPlan, first: OrderRequest, basis: Basis,
               decision: DecisionRecord, then: AfterOrders) -> asyncio.Task[None]:
        """Carry out a claimed decision's plan in a task of its own (its first order journaled)."""
        task = asyncio.create_task(self._execute(asset, plan, first, basis, decision, then))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _execute(
        self, asset: str, plan: ExecutionPlan, first: OrderRequest, basis: Basis, decision: DecisionRecord,
        then: AfterOrders,
    ) -> None:
        """Send the plan's orders one after another, each journaled before it is sent and final before the
        next: the slices, and after a post-only order that did not fill whole by its timeout, a market
        order for the rest. Orders are sent once (resent only after a definite refusal, with the same client
        id). Then journal the fills, and free the instrument: only once the account has been read after the
        last order and its position shows the fills (`OrderSender.read_account_showing`: never decide on
        the account from before a fill). An order the exchange adapter did not send (shadow mode) ends the
        decision, with no decision after it."""
        sender = self.sender
        started = sender.clock.now()
        position_before = basis.position_contracts
        states: list[OrderState] = []
        account_known = True
        withheld = False
        try:
            order_no = 0
            order: tuple[OrderRequest, Basis] | None = (first, basis)
            for index, amount in enumerate(plan.slices_contracts):
                if index > 0:
                    order = await self._next_order(decision, plan, order_no, amount)
                rest = amount
                while order is not None:  # the slice, then a post-only slice's market fallback
                    request = order[0]
                    order_no += 1
                    account_known = False
                    self.in_flight[plan.symbol] = request.client_order_id
                    ended = await sender.run(*order)
                    order = None
                    if ended is None or not ended.sent:  # not sent, or refused: the account is as it was
                        account_known = True
                        withheld = ended is not None
                        break
                    states.append(ended.state)
                    account_known = ended.account_read
                    rest = request.amount_contracts - ended.state.filled_contracts
                    if ended.falls_back and account_known:
                        order = await self._next_order(decision, plan, order_no, rest, fallback=True)
                if rest > 0 or not account_known or withheld:
                    break  # an order that did not fill whole: the next decision sees what is left
            if states:
                await self._backfill_fills({s.client_order_id or "" for s in states}, started)
                self._report(asset, plan, first, states, decision, account_known)
        except Exception as exc:  # an order task must never die silently
            sender.counters.errors += 1
            log.exception("order_task_failed", client_order_id=first.client_order_id, error=str(exc))
            failed = f"order {first.client_order_id} failed: {exc}"
            sender.alerts.send("error", "order_failed", failed, plan.symbol)
        finally:
            try:
                if not account_known:  # the account is unknown: no decision on it until a read succeeds
                    await sender.read_account_until_ok()
                filled = sum((s.filled_contracts * s.side.sign for s in states), Decimal(0))
                if filled:  # no decision on a position that has not taken the fills yet
                    await sender.read_account_showing(plan.symbol, position_before, filled)
            finally:
                self.in_flight.pop(plan.symbol, None)
        if withheld:
            return
        try:  # the next decision, on the account read after it
            await then()
        except Exception as exc:
            sender.counters.errors += 1
            log.exception("decision_failed", asset=asset, error=str(exc))

    def _report(self, asset: str, plan: ExecutionPlan, first: OrderRequest, states: list[OrderState],
                decision: DecisionRecord, account_known: bool) -> None:
        summary = _summary(plan, first, states)
        log.info(
            "rebalance_completed",
            asset=asset,
            client_order_id=first.client_order_id,
            orders=len(states),
            status=summary.status.value,
            filled=str(summary.filled_contracts),
        )
        alerts = self.sender.alerts
        if summary.filled_contracts > 0:
            self.sender.filled(plan.symbol)
            completed = self._completed(decision, summary, account_known)
            alerts.send("info", "rebalance_completed", completed, asset)
        else:
            alerts.send(
                "warning",
                "order_not_filled",
                f"order {first.client_order_id} on {plan.symbol} ended "
                f"{summary.status.value} with nothing filled"
                + (f": {summary.reject_reason}" if summary.reject_reason else ""),
                plan.symbol,
            )

    async def _next_order(
        self, decision: DecisionRecord, plan: ExecutionPlan, order_no: int, amount: Decimal,
        fallback: bool = False,
    ) -> tuple[OrderRequest, Basis] | None:
        """The decision's next order (a slice on a newer quote, or a post-only order's market fallback),
        checked against the risk limits again and journaled, with what it was sized from; None when
        nothing more is to be sent."""
        sender = self.sender
        symbol = plan.symbol
        hedge = self.state.instruments[symbol]
        if not fallback:
            await self._newer_quote(symbol, self.state.quotes[symbol].ts)
        if sender.draining:
            log.warning("order_not_sent", decision_id=plan.decision_id, symbol=symbol, reason="shutting down")
            return None
        basis = sender.basis(symbol, decision.asset, decision.band_coin)
        quote = basis.quote
        touch = taking_price(plan.side, quote)
        amount = hedge.round_contracts(amount, toward_zero=True)
        if amount <= 0 or (fallback and amount < min_slice_contracts(hedge, touch)):
            log.info("order_too_small", decision_id=plan.decision_id, symbol=symbol, amount=str(amount))
            return None
        now = sender.clock.now()
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
        await sender.journal.record_order(
            OrderRecord.pending(request, plan.decision_id, now, decision.price_usd, decision.asset)
        )
        return request, basis

    async def _newer_quote(self, symbol: str, after: datetime) -> None:
        """Wait (at most the order timeout) for a quote on `symbol` newer than `after`."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting_quote[task] = symbol
        try:
            await self.ingest.next_quote(symbol, after, self.sender.order_timeout_secs)
        finally:
            self._waiting_quote.pop(task, None)

    def _completed(self, decision: DecisionRecord, state: OrderState, account_known: bool) -> str:
        """The `rebalance_completed` alert: what was traded, and the delta before and after (`?` when the
        account could not be read after it)."""
        asset = decision.asset
        after = self.state.deltas().get(asset) if account_known else None
        verb = "bought" if state.side.sign > 0 else "sold"
        price = f" at {short(state.average_price)}" if state.average_price is not None else ""
        partly = "" if state.status is OrderStatus.FILLED else f" ({state.status.value})"
        delta_after = short(after.delta_coin) if after is not None else "?"
        return (
            f"{asset}: {verb} {short(state.filled_contracts)} {state.symbol}{price}{partly}; delta "
            f"{short(decision.delta_coin)} -> {delta_after} {asset} "
            f"(target {short(decision.target_coin)} ± {short(decision.band_coin)})"
        )

    async def _backfill_fills(self, client_order_ids: set[str], since: datetime) -> None:
        """Journal the fills of these orders the stream may have missed; when the exchange cannot be read,
        the stream and the next reconciliation bring them."""
        try:
            fills = await self.sender.exchange.fetch_fills(since - timedelta(minutes=1))
        except Exception as exc:
            log.warning("fills_backfill_failed", error=str(exc))
            return
        for fill in fills:
            if fill.client_order_id in client_order_ids:
                await self.ingest.on_fill(fill)

    # -- stopping and pausing -------------------------------------------------------------------

    async def settled(self) -> None:
        """Let every order task run until it has ended or waits for a quote yet to come (a replay's step)."""
        # One turn of the loop at a time: no event says "every task waits".
        while any(not self._idle(t) for t in self._tasks) or self.sender.alerts.tasks:  # noqa: ASYNC110
            await asyncio.sleep(0)

    def _idle(self, task: asyncio.Task[None]) -> bool:
        symbol = self._waiting_quote.get(task)
        return symbol is not None and self.ingest.awaits_quote(symbol)

    @contextlib.asynccontextmanager
    async def quiet(self, timeout_secs: float) -> AsyncIterator[bool]:
        """Take no new decision while inside; first wait (at most `timeout_secs`) for the orders in flight
        to end. Yields whether nothing is in flight, so that the books can be compared undisturbed."""
        self._quiet += 1
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + timeout_secs
            while self.in_flight:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=min(remaining, SETTLE_POLL_SECS))
                else:  # an order being journaled: its task starts in a moment
                    await asyncio.sleep(min(remaining, SETTLE_POLL_SECS / 4))
            yield not self.in_flight
        finally:
            self._quiet -= 1

    async def drain(self) -> None:
        """Let in-flight orders settle (on shutdown); no new decision, and no further slice or fallback
        order, from now on."""
        self._quiet += 1
        self.sender.draining = True
        self.ingest.wake_all()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.sender.alerts.flush()


def _summary(plan: ExecutionPlan, first: OrderRequest, states: list[OrderState]) -> OrderState:
    """The decision's orders as one: what they filled in all, at what average price."""
    filled = sum((s.filled_contracts for s in states), Decimal(0))
    cost = sum((s.average_price * s.filled_contracts for s in states if s.average_price is not None),
               Decimal(0))
    last = states[-1]
    status = last.status if filled < plan.total_contracts else OrderStatus.FILLED
    return replace(
        last,
        client_order_id=first.client_order_id,
        amount_contracts=plan.total_contracts,
        filled_contracts=filled,
        average_price=cost / filled if filled else None,
        status=status,
    )
