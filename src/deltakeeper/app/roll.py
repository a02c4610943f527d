"""Rolling quarterly hedges before expiry: which positions are due, the orders of each roll, and its
journal entry. Independent of the rebalancing loop, which calls `due_rolls` on its snapshot and sends the
orders through its own execution path.

A roll is one decision (reason `roll`) with two orders sharing its decision id: leg `a` closes the expiring
position (reduce-only), leg `b` opens the same coin exposure on the next quarterly (`domain.roll`). Both
orders are written to the journal, pending, before either is sent (`journal_roll`); the close goes first.
A roll waits (logs `roll_waiting`, returns nothing) while either contract's quote is missing or older
than `stale_secs`, or no next contract is listed: sizes never come from stale or missing prices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import structlog

from deltakeeper.domain.carry import must_roll
from deltakeeper.domain.exposure import AssetDelta, Position
from deltakeeper.domain.instruments import ZERO, Instrument, Kind
from deltakeeper.domain.orders import OrderRequest, OrderType, Quote, client_order_id
from deltakeeper.domain.records import DecisionRecord, OrderRecord
from deltakeeper.domain.roll import DEFAULT_ROLL_WINDOW_SECS, RollPlan, next_contract, plan_roll
from deltakeeper.ports import Journal

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


def _fresh(quote: Quote | None, now: datetime, stale_secs: float) -> bool:
    return quote is not None and (now - quote.ts).total_seconds() <= stale_secs


def due_rolls(
    positions: Iterable[Position],
    instruments: Mapping[str, Instrument],
    quotes: Mapping[str, Quote],
    now: datetime,
    new_decision_id: Callable[[], int],
    settings: RollSettings = RollSettings(),
    deltas: Mapping[str, AssetDelta] | None = None,
    trading_state: str = "active",
) -> list[RollOrders]:
    """The rolls due now: one for each position on a quarterly inside its roll window (and not expired)
    whose next contract is listed and both quotes are fresh. Sized at each contract's mark."""
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
        if old is None or new is None or not (_fresh(old, now, settings.stale_secs)
                                              and _fresh(new, now, settings.stale_secs)):
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
