"""Rolling quarterly hedges before expiry: which positions are due, the orders of each roll, its journal
entry, and (`Rolls`) the roll carried out in the decision cycle through the order runner.

A roll is one decision (reason `roll`) with two orders sharing its decision id: leg `a` closes the expiring
position (reduce-only), leg `b` opens the same coin exposure on the next quarterly (`domain.roll`). Both
orders are written to the journal, pending, before either is sent (`journal_roll`); the close goes first.
A roll waits (logs `roll_waiting`, returns nothing) while either contract's quote is missing or older
than `stale_secs`, or no next contract is listed: sizes never come from stale or missing prices.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

import structlog

from deltakeeper.app.execution import ExecutionPlan, ExecutionStyle
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.order_check import OrderCheck
from deltakeeper.app.order_runner import AfterOrders, OrderRunner
from deltakeeper.app.orders import taking_price
from deltakeeper.domain.carry import must_roll
from deltakeeper.domain.exposure import AssetDelta, Position
from deltakeeper.domain.instruments import ZERO, Instrument, Kind
from deltakeeper.domain.orders import (
    OrderIntent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Quote,
    client_order_id,
)
from deltakeeper.domain.records import DecisionRecord, OrderRecord
from deltakeeper.domain.roll import DEFAULT_ROLL_WINDOW_SECS, RollPlan, next_contract, plan_roll
from deltakeeper.ports import Clock, Journal

log = structlog.get_logger("deltakeeper.roll")

ROLL_REASON = "roll"
DEFAULT_STALE_SECS = 15.0


@dataclass(frozen=True, slots=True)
class RollSettings:
    roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS
    """Roll once fewer than this many seconds are left before expiry."""
    stale_secs: float = DEFAULT_STALE_SECS
    """A quote older than this is stale: the roll waits for a fresh one."""


@dataclass(frozen=True, slots=True)
class RollOrders:
    """A roll to carry out: its plan, its decision record, and its orders (the close first)."""

    plan: RollPlan
    decision: DecisionRecord
    requests: tuple[OrderRequest, ...]

    def pending(self, ts: datetime) -> list[OrderRecord]:
        """The orders as the journal keeps them before they are sent."""
        return [
            OrderRecord.pending(request, self.decision.decision_id, ts, leg.reference_price, self.plan.asset)
            for request, leg in zip(self.requests, self.plan.legs, strict=True)
        ]


def roll_orders(plan: RollPlan, instruments: Mapping[str, Instrument], decision_id: int, now: datetime,
                price_usd: Decimal, delta: AssetDelta | None = None,
                trading_state: str = "active") -> RollOrders:
    """The decision and market orders of `plan`. The record carries the asset's delta when given (a roll
    leaves it as it is), the new contract, side and size, and both legs' taker fees as its cost; target
    and band are not a roll's to say (zero)."""
    requests = tuple(
        OrderRequest(client_order_id(decision_id, leg_no), leg.symbol, leg.side, leg.amount_contracts,
                     OrderType.MARKET, reduce_only=leg.reduce_only)
        for leg_no, leg in enumerate(plan.legs)
    )
    cost_usd = sum((instruments[leg.symbol].notional_usd(leg.amount_contracts, leg.reference_price)
                    * instruments[leg.symbol].taker_fee_rate for leg in plan.legs), ZERO)
    detail = "; ".join(f"{leg.side.value} {leg.amount_contracts:f} {leg.symbol}" for leg in plan.legs)
    detail += f"; expiry {plan.expiry.isoformat()}; exposure {plan.exposure_coin:f} {plan.asset}"
    opened = plan.open
    decision = DecisionRecord(
        decision_id=decision_id, ts=now, asset=plan.asset,
        delta_coin=delta.delta_coin if delta else ZERO, delta_usd=delta.delta_usd if delta else ZERO,
        target_coin=ZERO, band_coin=ZERO, price_usd=price_usd, reason=ROLL_REASON,
        trading_state=trading_state, symbol=opened.symbol if opened else plan.expiring,
        side=(opened or plan.close).side, amount_contracts=(opened or plan.close).amount_contracts,
        est_cost_usd=cost_usd, detail=detail,
    )
    return RollOrders(plan, decision, requests)


def due_rolls(
    positions: Iterable[Position],
    instruments: Mapping[str, Instrument],
    quotes: Mapping[str, Quote],
    now: datetime,
    new_decision_id: Callable[[], int],
    settings: RollSettings = RollSettings(),
    deltas: Mapping[str, AssetDelta] | None = None,
    trading_state: str = "active",
    age_secs: Callable[[Quote], float] | None = None,
) -> list[RollOrders]:
    """The rolls due now: one for each position on a quarterly inside its roll window (and not expired)
    whose next contract is listed and both quotes are fresh (`age_secs`, by default the time since the
    quote's stamp). Sized at each contract's mark."""
    def fresh(quote: Quote | None) -> bool:
        if quote is None:
            return False
        age = (now - quote.ts).total_seconds() if age_secs is None else age_secs(quote)
        return age <= settings.stale_secs

    rolls = []
    for position in positions:
        expiring = instruments.get(position.symbol)
        if (expiring is None or expiring.kind is not Kind.FUTURE or expiring.expiry is None
                or position.contracts == 0 or now >= expiring.expiry
                or not must_roll(now, expiring.expiry, settings.roll_window_secs)):
            continue
        target = next_contract(instruments.values(), expiring, now, settings.roll_window_secs)
        if target is None:
            log.warning("roll_waiting", symbol=expiring.symbol, reason="no_next_contract")
            continue
        old, new = quotes.get(expiring.symbol), quotes.get(target.symbol)
        if old is None or new is None or not (fresh(old) and fresh(new)):
            log.warning("roll_waiting", symbol=expiring.symbol, next=target.symbol, reason="stale_price")
            continue
        plan = plan_roll(position, expiring, target, now, old.mark, new.mark, settings.roll_window_secs)
        if plan is None:
            continue
        delta = deltas.get(plan.asset) if deltas else None
        rolls.append(roll_orders(plan, instruments, new_decision_id(), now, old.index or old.mark, delta,
                                 trading_state))
    return rolls


async def journal_roll(journal: Journal, roll: RollOrders, ts: datetime) -> None:
    """Write the roll's decision with its close order, then its open order, all pending: before sending."""
    first, *rest = roll.pending(ts)
    await journal.record_decision(roll.decision, first)
    for order in rest:
        await journal.record_order(order)
    log.info("roll_decided", asset=roll.plan.asset, expiring=roll.plan.expiring, next=roll.plan.next,
             exposure_coin=f"{roll.plan.exposure_coin:f}", orders=[r.client_order_id for r in roll.requests])


def dated_alike(instrument: Instrument, future: Instrument) -> bool:
    """Whether `instrument` is a dated future of the same market as `future` (one of its roll chain)."""
    return (instrument.kind is Kind.FUTURE and future.kind is Kind.FUTURE and
            (instrument.base, instrument.quote, instrument.settle, instrument.inverse)
            == (future.base, future.quote, future.settle, future.inverse))


class Rolls:
    """The roll of a quarterly hedge in the decision cycle (`DecisionCycle.evaluate` asks first): due when
    the account holds a contract of the hedge's market inside its roll window. Both legs pass the risk check
    whole or the roll waits; the decision is journaled with both legs, both contracts held in flight from then
    on (no other decision on either comes between the legs), then the order runner sends the close. Once
    the account read after it shows the expiring position gone, the asset's hedge becomes the next contract
    (`switch`) and the open leg goes. A close that did not fill whole cancels the open leg: the next
    evaluation rolls what is left."""

    def __init__(self, state: MarketState, orders: OrderRunner, check: OrderCheck, journal: Journal,
                 clock: Clock, settings: RollSettings, new_decision_id: Callable[[], int],
                 switch: Callable[[str, str], None]) -> None:
        self.state = state
        self.orders = orders
        self.check = check
        self.journal = journal
        self.clock = clock
        self.settings = settings
        self.new_decision_id = new_decision_id
        self.switch = switch
        """(asset, next contract): the asset is hedged on the next contract from now on."""
        self._unsent: set[str] = set()
        """Client ids of open legs held in flight and not (yet) handed to the order runner."""

    def due(self, hedge: Instrument, deltas: Mapping[str, AssetDelta], trading_state: str
            ) -> RollOrders | None:
        """The roll due now on the market of `hedge` (a dated future), None when none is (or its
        instruments are busy)."""
        account = self.state.account
        if account is None or hedge.kind is not Kind.FUTURE:  # only a dated future's chain rolls
            return None
        instruments = self.state.instruments
        held = [p for p in account.positions
                if p.contracts != 0 and p.symbol in instruments and dated_alike(instruments[p.symbol], hedge)]
        if not held:
            return None
        now = self.clock.now()

        def age_secs(quote: Quote) -> float:  # as the risk check measures it
            return self.state.quote_age_secs(quote.symbol, self.clock.speed, now.timestamp())

        for roll in due_rolls(held, instruments, self.state.quotes, now, self.new_decision_id,
                              self.settings, deltas, trading_state, age_secs):
            if any(self.orders.busy(r.symbol) for r in roll.requests):
                continue
            part = self._part(roll, held)
            if part is None:
                return roll
            return next(iter(due_rolls([part], instruments, self.state.quotes, now, self.new_decision_id,
                                       self.settings, deltas, trading_state, age_secs)), None)
        return None

    def _part(self, roll: RollOrders, held: list[Position]) -> Position | None:
        """The part of the expiring position one roll may move when a leg is larger than the risk limits
        let one order be (`DK_MAX_ORDER_USD`): the rest is rolled by the next decisions. None: all of it
        (or nothing: the roll is then refused whole)."""
        fractions = [self._allowed(r) / r.amount_contracts for r in roll.requests]
        fraction = min(fractions)
        if fraction >= 1 or fraction <= 0:
            return None
        position = next(p for p in held if p.symbol == roll.plan.expiring)
        expiring = self.state.instruments[position.symbol]
        # a lot step less: the open leg, rounded to its own lots, stays inside the limit too
        contracts = expiring.round_contracts(abs(position.contracts) * fraction, toward_zero=True)
        contracts -= expiring.lot_step_contracts
        if contracts < max(expiring.min_contracts, expiring.lot_step_contracts):
            return None
        return replace(position, contracts=contracts if position.contracts > 0 else -contracts)

    def _allowed(self, request: OrderRequest) -> Decimal:
        """The size of `request` the risk check lets through now (0: refused)."""
        touch = taking_price(request.side, self.state.quotes[request.symbol])
        outcome = self.check(OrderIntent(request.symbol, request.side, request.amount_contracts, touch,
                                         request.reduce_only), self.clock.now())
        return outcome.intent.amount_contracts if outcome.intent is not None else ZERO

    def successor(self, hedge: Instrument) -> str | None:
        """The contract to hedge on instead of `hedge`, a dated future inside its roll window (or expired)
        with nothing held on it: the next one (None: `hedge` still serves, or no next one is listed). A
        hedge that could not be rolled in time, and was settled, is replaced so."""
        if hedge.expiry is None:
            return None
        now = self.clock.now()
        if (not must_roll(now, hedge.expiry, self.settings.roll_window_secs)
                or self.state.position_contracts(hedge.symbol) != 0):
            return None
        target = next_contract(self.state.instruments.values(), hedge, now, self.settings.roll_window_secs)
        return target.symbol if target is not None else None

    def refused(self, roll: RollOrders) -> tuple[str, ...]:
        """The risk check's notes when it would not pass a leg whole (empty: both pass)."""
        now = self.clock.now()
        for request in roll.requests:
            touch = taking_price(request.side, self.state.quotes[request.symbol])
            outcome = self.check(OrderIntent(request.symbol, request.side, request.amount_contracts, touch,
                                             request.reduce_only), now)
            if outcome.intent is None or outcome.intent.amount_contracts != request.amount_contracts:
                return tuple(outcome.notes) or ("denied",)
        return ()

    async def start(self, roll: RollOrders, then: AfterOrders) -> None:
        """Journal the roll with both legs, both contracts held in flight, then send its close; `then` once
        the roll is over."""
        close, *opened = roll.requests
        with contextlib.ExitStack() as claims:
            for request in roll.requests:
                claims.enter_context(self.orders.claim(request.symbol, request.client_order_id))
            await journal_roll(self.journal, roll, self.clock.now())
        rest = self.state.position_contracts(close.symbol) + close.side.sign * close.amount_contracts
        task = self._submit(roll, close, lambda: self._after_close(roll, rest, then))
        for request in opened:  # the close not sent at all (shadow mode): no open leg either
            self._unsent.add(request.client_order_id)
            task.add_done_callback(functools.partial(self._release_unsent, request))

    def _release_unsent(self, request: OrderRequest, _task: object = None) -> None:
        if request.client_order_id in self._unsent:
            self._unsent.discard(request.client_order_id)
            self.orders.release(request.symbol, request.client_order_id)

    def _submit(self, roll: RollOrders, request: OrderRequest, then: AfterOrders) -> asyncio.Task[None]:
        plan = ExecutionPlan(roll.decision.decision_id, request.symbol, request.side,
                             (request.amount_contracts,), ExecutionStyle.MARKET, request.reduce_only)
        basis = self.orders.sender.basis(request.symbol, roll.plan.asset, ZERO)
        return self.orders.submit(roll.plan.asset, plan, request, basis, roll.decision, then)

    async def _after_close(self, roll: RollOrders, rest: Decimal, then: AfterOrders) -> None:
        """The close is over: if it filled whole (`rest` left on the expiring contract), the open leg."""
        plan = roll.plan
        closed = self.state.position_contracts(plan.expiring) == rest
        if closed and rest == 0:
            self.switch(plan.asset, plan.next)
        for opened in roll.requests[1:]:
            if closed:  # still held in flight: no await since the close's account read
                self._unsent.discard(opened.client_order_id)
                self._submit(roll, opened, then)
                return
            self._release_unsent(opened)
            reason = f"not sent: the close on {plan.expiring} did not fill whole"
            log.warning("roll_open_not_sent", asset=plan.asset, reason=reason)
            canceled = self.orders.sender.local_state(opened, OrderStatus.CANCELED, reason)
            await self.journal.update_order(canceled)
        await then()
