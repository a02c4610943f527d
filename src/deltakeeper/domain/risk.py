"""Risk limits and trading states (DESIGN.md 6). Pure: the clock is an argument."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum

from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.margin import MarginRules, leg_requirements
from deltakeeper.domain.margin_headroom import margin_headroom
from deltakeeper.domain.orders import Fill, OrderIntent


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
    min_margin_headroom: Decimal | None = None
    """Pre-trade: an order may not leave its settlement currency's margin headroom below this fraction
    (DK_MARGIN_MIN_HEADROOM_PCT / 100); None: no margin check."""
    critical_margin_headroom: Decimal | None = None
    """The account's headroom below this fraction is the `margin_low` breach: REDUCE_ONLY
    (DK_MARGIN_CRITICAL_HEADROOM_PCT / 100)."""


DEFAULT_LIMITS = RiskLimits(
    max_order_usd=Decimal(250_000),
    max_daily_traded_usd=Decimal(5_000_000),
    max_position_usd=Decimal(2_000_000),
    stale_secs=15.0,
    price_collar_bps=Decimal(100),
)
"""The limits of DK_MAX_ORDER_USD, DK_MAX_DAILY_TRADED_USD, DK_MAX_POSITION_USD, DK_STALE_SECS and
DK_PRICE_COLLAR_BPS when unset: the live bot's and the backtest's defaults."""


@dataclass(frozen=True, slots=True)
class MarginContext:
    """The margin of the settlement currency the order's instrument settles in, before the order, as
    `domain.margin.account_margin` finds it (the exchange's figures where it gives them)."""

    equity: Decimal
    """Its margin balance (wallet + futures PnL), in the settle coin."""
    initial_other: Decimal
    maintenance_other: Decimal
    """Initial and maintenance margin of the account's other positions in that coin."""
    headroom: Decimal
    """The account's margin headroom now (its lowest settlement currency's)."""
    rules: MarginRules
    underlying_usd: Decimal | None = None
    """The underlying's USD price (options only)."""
    leverage: Decimal | None = None
    """The position's leverage where the exchange reports it."""


MarginSource = Callable[[str], "MarginContext | None"]
"""symbol -> the margin an order on it draws on (app/margin_watch.py `MarginWatch.context`)."""
LiquidationHandler = Callable[[Fill], Awaitable[None]]
"""Called with each new fill the exchange marks as a liquidation (`MarginWatch.on_liquidation`)."""


def no_margin_context(symbol: str) -> MarginContext | None:
    """The margin source where no margin is watched: none, so the margin check is skipped."""
    return None


@dataclass(frozen=True, slots=True)
class RiskContext:
    quote_age_secs: float
    """How old the price behind the order is, in wall-clock seconds."""
    mark_price: Decimal
    """What the price collar holds the order's price to: a price independent of the quote the order is
    priced on (the live bot's is the earlier price that vouched for it: `MarketState.references`)."""
    position_contracts: Decimal
    """The current signed position in the order's instrument."""
    traded_today_usd: Decimal
    state: TradingState
    margin: MarginContext | None = None
    """The margin the order would draw on; None: the margin limits are not checked."""


@dataclass(frozen=True, slots=True)
class RiskOutcome:
    intent: OrderIntent | None
    """The order to send (possibly made smaller), or None when denied."""
    notes: tuple[str, ...]
    """Why the order was denied or made smaller; limits that want the state to change."""


# Breaches that move the bot to REDUCE_ONLY until they have cleared for a while.
REDUCE_ONLY_BREACHES = frozenset({"max_position", "max_daily_traded", "margin_low"})


@dataclass(frozen=True, slots=True)
class MarginAfter:
    """The order's settlement currency after the order fills whole at its reference price."""

    equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal

    @property
    def headroom(self) -> Decimal:
        return margin_headroom(self.equity, self.maintenance_margin)


def margin_after(
    intent: OrderIntent, instrument: Instrument, position_contracts: Decimal, margin: MarginContext
) -> MarginAfter:
    """Equity less the taker fee (and an option's premium: paid by a buyer, received by a seller), and the
    other positions' margin plus this instrument's at its new size, priced at the order's reference."""
    price = intent.reference_price
    signed = intent.amount_contracts * intent.side.sign
    after = position_contracts + signed
    im, mm = leg_requirements(instrument, after, price, margin.underlying_usd, margin.rules, margin.leverage)
    if instrument.is_option:
        premium = signed * instrument.contract_size * price
        fee = abs(premium) * instrument.taker_fee_rate
    else:
        premium = ZERO
        notional = instrument.notional_usd(intent.amount_contracts, price)
        fee = (notional / price if instrument.inverse else notional) * instrument.taker_fee_rate
    return MarginAfter(
        margin.equity - fee - premium, margin.initial_other + im, margin.maintenance_other + mm
    )


def headroom_after(
    intent: OrderIntent, instrument: Instrument, position_contracts: Decimal, margin: MarginContext
) -> Decimal:
    """The settlement currency's margin headroom `(equity - MM) / equity` once the order has filled."""
    return margin_after(intent, instrument, position_contracts, margin).headroom


def margin_fits(
    intent: OrderIntent, instrument: Instrument, position_contracts: Decimal, margin: MarginContext,
    min_headroom: Decimal,
) -> str | None:
    """None when the order leaves at least `min_headroom` and its initial margin within the equity; else
    the note that refuses it: `margin_headroom` or `initial_margin`."""
    after = margin_after(intent, instrument, position_contracts, margin)
    if after.headroom < min_headroom:
        return "margin_headroom"
    if after.initial_margin > after.equity:
        return "initial_margin"
    return None


def _fit_margin(
    intent: OrderIntent,
    instrument: Instrument,
    ctx: RiskContext,
    margin: MarginContext,
    min_headroom: Decimal,
) -> tuple[OrderIntent | None, str | None]:
    """The order, or the largest part of it (in lot steps) that `margin_fits`; None when no part does.
    Returns the note of the limit that bound it (None when the whole order fits)."""
    position = ctx.position_contracts
    note = margin_fits(intent, instrument, position, margin, min_headroom)
    if note is None:
        return intent, None
    step = instrument.lot_step_contracts
    steps = int(intent.amount_contracts / step)
    # Up to closing the position, an order against it only frees margin: that part always goes.
    against = position != 0 and (position > 0) != (intent.side.sign > 0)
    low = min(int(abs(position) / step), steps) if against else 0
    high = steps  # low may go (or is 0), high does not fit
    while high - low > 1:
        mid = (low + high) // 2
        trial = replace(intent, amount_contracts=mid * step)
        if margin_fits(trial, instrument, position, margin, min_headroom) is None:
            low = mid
        else:
            high = mid
    amount = low * step
    if amount <= 0 or amount < instrument.min_contracts:
        return None, note
    return replace(intent, amount_contracts=amount), note


def _shrink(intent: OrderIntent, amount: Decimal, instrument: Instrument) -> OrderIntent | None:
    rounded = instrument.round_contracts(amount, toward_zero=True)
    if rounded <= 0:
        return None
    return replace(intent, amount_contracts=min(rounded, intent.amount_contracts))


def check(intent: OrderIntent, instrument: Instrument, ctx: RiskContext, limits: RiskLimits) -> RiskOutcome:
    """Apply every limit in turn. Size limits make the order smaller; what cannot be sent is denied.

    Margin (with `ctx.margin`): an order that grows the position may not leave its settlement currency's
    headroom below `limits.min_margin_headroom`, nor its initial margin above the equity: it is made
    smaller to what fits, or denied (`margin_headroom`, `initial_margin`). An order that shrinks the
    position only frees margin and is never held back by it. The account's headroom below
    `limits.critical_margin_headroom` adds the standing note `margin_low` to every outcome (the state
    machine's REDUCE_ONLY breach)."""
    if ctx.state is TradingState.HALTED:
        return RiskOutcome(None, ("halted",))
    standing: tuple[str, ...] = ()
    critical = limits.critical_margin_headroom
    if ctx.margin is not None and critical is not None and ctx.margin.headroom < critical:
        standing = ("margin_low",)
    if ctx.quote_age_secs > limits.stale_secs:
        return RiskOutcome(None, ("stale_price", *standing))
    if ctx.mark_price <= 0:
        return RiskOutcome(None, ("no_mark_price", *standing))
    collar_bps = abs(intent.reference_price - ctx.mark_price) / ctx.mark_price * 10_000
    if collar_bps > limits.price_collar_bps:
        return RiskOutcome(None, ("price_collar", *standing))

    notes: list[str] = list(standing)
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
            return RiskOutcome(None, ("reduce_only", *standing))
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
        if current is not None and ctx.margin is not None and limits.min_margin_headroom is not None:
            fitted, note = _fit_margin(current, instrument, ctx, ctx.margin, limits.min_margin_headroom)
            if note is not None:
                notes.append(note)
            current = fitted
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
