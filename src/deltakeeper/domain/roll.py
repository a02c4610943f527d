"""Perpetual or quarterly by carry, and the roll of a quarterly hedge before its expiry (REFERENCE 6).

- `choose_hedge`: the perpetual while its expected funding beats the future's locked-in basis
  (`carry.prefer_hedge`), else the future; never a future already inside the roll window.
- `nearest_quarterly`: the quarterly to hedge with now (the nearest expiry outside the roll window).
- `next_contract`: the quarterly to roll into: the same market (base, quote, settlement, linear or
  inverse) with the nearest later expiry that is itself outside the roll window.
- `plan_roll`: inside the roll window (fewer than `roll_window_secs` before expiry, default 48 hours:
  before the exchange's settlement averaging), one decision with two legs: close the whole position on the
  expiring future (reduce-only) and open the same coin exposure on the next one, each sized in its own
  contract's units at its own price. Linear contracts of the same size roll contract for contract; an
  inverse position of N USD face at price P1 carries N / P1 coins, which is N x P2 / P1 USD face on a
  next contract priced P2.

Pure: times and prices are arguments; nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from deltakeeper.domain.carry import (
    break_even_funding_per_8h,
    must_roll,
    prefer_hedge,
    quarterly_carry_annualised,
)
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument, Kind
from deltakeeper.domain.orders import OrderIntent, Side

DEFAULT_ROLL_WINDOW_SECS = 48 * 3600
_SECS_PER_DAY = Decimal(86_400)


def days_to_expiry(expiry: datetime, now: datetime) -> Decimal:
    """Days (fractional) from `now` to `expiry`; negative once expired."""
    return Decimal((expiry - now).total_seconds()) / _SECS_PER_DAY


@dataclass(frozen=True, slots=True)
class HedgeChoice:
    """The chosen hedge and the figures it was chosen on (the future's carry and break-even funding;
    None when the future was out of the question, inside its roll window)."""

    symbol: str
    kind: Literal["perp", "future"]
    days_to_expiry: Decimal
    carry_annualised: Decimal | None
    break_even_funding_per_8h: Decimal | None


def choose_hedge(
    perp_symbol: str,
    perp_expected_funding_per_8h: Decimal,
    future: Instrument,
    future_price: Decimal,
    spot_price: Decimal,
    now: datetime,
    *,
    hedge_side: Literal["short", "long"] = "short",
    roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS,
) -> HedgeChoice:
    """The perpetual or the quarterly `future` as the hedge, by carry to the future's expiry."""
    if future.expiry is None:
        raise ValueError(f"{future.symbol} has no expiry")
    days = days_to_expiry(future.expiry, now)
    if must_roll(now, future.expiry, roll_window_secs):
        return HedgeChoice(perp_symbol, "perp", days, None, None)
    carry = quarterly_carry_annualised(future_price, spot_price, days)
    break_even = break_even_funding_per_8h(future_price, spot_price, days)
    winner = prefer_hedge(perp_expected_funding_per_8h, future_price, spot_price, days, hedge_side)
    return HedgeChoice(perp_symbol if winner == "perp" else future.symbol, winner, days, carry, break_even)


def nearest_quarterly(instruments: Iterable[Instrument], base: str, now: datetime, *, inverse: bool = False,
                      roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS) -> Instrument | None:
    """The dated future on `base` (USD-margined, or coin-settled with `inverse`) with the nearest expiry
    outside the roll window: the quarterly to hedge with now. None when none is listed."""
    candidates = [
        i for i in instruments
        if i.kind is Kind.FUTURE and i.expiry is not None and i.base == base and i.inverse == inverse
        and (i.usd_margined or inverse) and not must_roll(now, i.expiry, roll_window_secs)
    ]
    return min(candidates, key=lambda i: i.expiry or now, default=None)


def next_contract(instruments: Iterable[Instrument], expiring: Instrument, now: datetime,
                  roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS) -> Instrument | None:
    """The future to roll `expiring` into, or None when none is listed."""
    if expiring.expiry is None:
        raise ValueError(f"{expiring.symbol} has no expiry")
    same_market = [
        i for i in instruments
        if i.expiry is not None and i.expiry > expiring.expiry
        and (i.quote, i.settle) == (expiring.quote, expiring.settle)
    ]
    return nearest_quarterly(same_market, expiring.base, now, inverse=expiring.inverse,
                             roll_window_secs=roll_window_secs)


@dataclass(frozen=True, slots=True)
class RollPlan:
    """One roll decision: `close` the expiring position whole (reduce-only), `open` the same coin
    exposure on the next contract. `open` is None when that exposure rounds below the next contract's
    minimum: the close alone (the expiry would settle the position anyway)."""

    asset: str
    expiring: str
    next: str
    expiry: datetime
    exposure_coin: Decimal
    """The signed coin exposure rolled (the position's delta at the expiring contract's price)."""
    close: OrderIntent
    open: OrderIntent | None

    @property
    def legs(self) -> tuple[OrderIntent, ...]:
        return (self.close,) if self.open is None else (self.close, self.open)


def plan_roll(
    position: Position,
    expiring: Instrument,
    next_future: Instrument,
    now: datetime,
    expiring_price: Decimal,
    next_price: Decimal,
    roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS,
) -> RollPlan | None:
    """The roll of `position` (on `expiring`) into `next_future`, or None: no position, not yet inside the
    roll window, or already expired (the exchange settles it; the delta is then hedged afresh).
    Prices are each contract's own (USD per coin), e.g. its mark."""
    expiry = expiring.expiry
    if expiry is None or next_future.expiry is None or next_future.expiry <= expiry:
        raise ValueError(f"cannot roll {expiring.symbol} into {next_future.symbol}")
    if next_future.base != expiring.base:
        raise ValueError(f"{next_future.symbol} is not on {expiring.base}")
    if expiring_price <= 0 or next_price <= 0:
        raise ValueError("prices must be positive")
    held = position.contracts
    if held == 0 or now >= expiry or not must_roll(now, expiry, roll_window_secs):
        return None
    exposure_coin = expiring.delta_coin(held, expiring_price)
    close = OrderIntent(expiring.symbol, Side.for_signed(-held), abs(held), expiring_price, reduce_only=True)
    contracts = next_future.round_contracts(next_future.contracts_for_coin(exposure_coin, next_price))
    minimum = max(next_future.min_contracts, next_future.lot_step_contracts)
    opened = None
    if abs(contracts) >= minimum and contracts != ZERO:
        opened = OrderIntent(next_future.symbol, Side.for_signed(contracts), abs(contracts), next_price)
    return RollPlan(expiring.base, expiring.symbol, next_future.symbol, expiry, exposure_coin, close, opened)
