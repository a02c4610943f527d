"""Risk limits and trading states (DESIGN.md 6). Pure: the clock is an argument."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum

from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import OrderIntent


class TradingState(str, Enum):
    ACTIVE = "active"
    REDUCE_ONLY = "reduce_only"  # orders may only shrink the gross derivative position
    HALTED = "halted"  # cancels only


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_order_usd: Decimal
    max_daily_traded_usd: Decimal
    max_position_usd: Decimal
    stale_secs: float
    price_collar_bps: Decimal


@dataclass(frozen=True, slots=True)
class RiskContext:
    quote_age_secs: float
    """How old the price behind the order is, in wall-clock seconds."""
    mark_price: Decimal
    position_contracts: Decimal
    """The current signed position in the order's instrument."""
    traded_today_usd: Decimal
    state: TradingState


@dataclass(frozen=True, slots=True)
class RiskOutcome:
    intent: OrderIntent | None
    """The order to send (possibly made smaller), or None when denied."""
    notes: tuple[str, ...]
    """Why the order was denied or made smaller; limits that want the state to change."""


# Breaches that move the bot to REDUCE_ONLY until they have cleared for a while.
REDUCE_ONLY_BREACHES = frozenset({"max_position", "max_daily_traded"})


def _shrink(intent: OrderIntent, amount: Decimal, instrument: Instrument) -> OrderIntent | None:
    rounded = instrument.round_contracts(amount, toward_zero=True)
    if rounded <= 0:
        return None
    return replace(intent, amount_contracts=min(rounded, intent.amount_contracts))


def check(intent: OrderIntent, instrument: Instrument, ctx: RiskContext, limits: RiskLimits) -> RiskOutcome:
    """Apply every limit in turn. Size limits make the order smaller; what cannot be sent is denied."""
    if ctx.state is TradingState.HALTED:
        return RiskOutcome(None, ("halted",))
    if ctx.quote_age_secs > limits.stale_secs:
        return RiskOutcome(None, ("stale_price",))
    if ctx.mark_price <= 0:
        return RiskOutcome(None, ("no_mark_price",))
    collar_bps = abs(intent.reference_price - ctx.mark_price) / ctx.mark_price * 10_000
    if collar_bps > limits.price_collar_bps:
        return RiskOutcome(None, ("price_collar",))

    notes: list[str] = []
    price = intent.reference_price
    per_contract_usd = instrument.notional_usd(Decimal(1), price)
    signed = intent.amount_contracts * intent.side.sign
    position_after = ctx.position_contracts + signed
    reduces = abs(position_after) < abs(ctx.position_contracts)
    current: OrderIntent | None = intent

    def limit_to(amount: Decimal, note: str) -> None:
        nonlocal current
        if current is not None and amount < current.amount_contracts:
            current = _shrink(current, amount, instrument)
            notes.append(note)

    if ctx.state is TradingState.REDUCE_ONLY:
        # Only an order against the position may go; one through zero is clipped to closing it, and is then
        # a reducing order that the daily and position limits must not block.
        if ctx.position_contracts == 0 or (signed > 0) == (ctx.position_contracts > 0):
            return RiskOutcome(None, ("reduce_only",))
        limit_to(abs(ctx.position_contracts), "reduce_only")
        reduces = True
        if current is not None:
            current = replace(current, reduce_only=True)
    limit_to(limits.max_order_usd / per_contract_usd, "max_order")
    if not reduces:
        room_usd = limits.max_daily_traded_usd - ctx.traded_today_usd
        limit_to(max(room_usd, ZERO) / per_contract_usd, "max_daily_traded")
        room_contracts = limits.max_position_usd / per_contract_usd - abs(ctx.position_contracts)
        limit_to(max(room_contracts, ZERO), "max_position")
    return RiskOutcome(current, tuple(notes))


@dataclass(frozen=True, slots=True)
class StateMachine:
    """The trading state with its cause and hysteresis: back to ACTIVE only after the cause has been
    clear for `clear_after_secs`, or when the operator resumes."""

    state: TradingState = TradingState.ACTIVE
    cause: str = ""
    clear_since: datetime | None = None

    def observe(self, breaches: frozenset[str], now: datetime, clear_after_secs: float) -> StateMachine:
        if self.state is TradingState.HALTED:
            return self
        tripped = breaches & REDUCE_ONLY_BREACHES
        if tripped:
            return StateMachine(TradingState.REDUCE_ONLY, ",".join(sorted(tripped)), None)
        if self.state is TradingState.ACTIVE:
            return self
        if self.clear_since is None:
            return replace(self, clear_since=now)
        if (now - self.clear_since).total_seconds() >= clear_after_secs:
            return StateMachine()
        return self

    def halt(self, reason: str) -> StateMachine:
        return StateMachine(TradingState.HALTED, reason, None)

    def resume(self) -> StateMachine:
        return StateMachine()
