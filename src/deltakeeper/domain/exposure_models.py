"""Exposures that move: what is being hedged, as holdings of one asset over time (REFERENCE.md 4).

Spot plus linear perpetual books have almost no gamma: their delta moves because the holdings move. These
models say how many coins of an asset are held at a time and price, for backtests and for live use:

- `StaticHoldings`: a fixed number of coins.
- `ConstantProductPool`: a liquidity-pool position x * y = k, the asset (x coins) against USD (y). At price
  S the pool holds x = sqrt(k / S) coins and y = sqrt(k S) USD, worth 2 sqrt(k S). At four times the
  price it holds half the coins: it sells into rises and buys into falls (short gamma).
- `InventoryPath`: a recorded path of holdings, a step function of time: the quantity of the latest
  record at or before the time, zero before the first.

Options hold no coins: their delta moves with the price through their gamma. `OptionBook` is a book of one
option, valued by Black-76 at a fixed implied volatility, that `exposure.asset_deltas` counts as it counts
the live bot's option positions.

Pure and clock-free: time is passed in, seconds since the epoch (an option book's: a datetime). Pool maths
is in floats (a square root); holdings come back as `Decimal` coins rounded to `COIN_QUANTUM`, like an
exchange wallet.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from deltakeeper.domain.exposure import Position, years_to_expiry
from deltakeeper.domain.greeks import black76_price_usd, greeks
from deltakeeper.domain.instruments import Instrument

COIN_QUANTUM = Decimal("1E-8")


class ExposureModel(Protocol):
    def holdings_coin(self, price_usd: float, t_secs: float) -> Decimal:
        """Coins of the asset held at `t_secs` when the asset trades at `price_usd`."""
        ...


def _coins(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(COIN_QUANTUM)


@dataclass(frozen=True, slots=True)
class StaticHoldings:
    coin: Decimal

    def holdings_coin(self, price_usd: float, t_secs: float) -> Decimal:
        return self.coin


@dataclass(frozen=True, slots=True)
class ConstantProductPool:
    """x * y = k with y in USD; `k` in coin x USD."""

    k: float

    @classmethod
    def from_value(cls, value_usd: float, price_usd: float) -> ConstantProductPool:
        """A pool worth `value_usd` at `price_usd`, half in the asset and half in USD: k = V^2 / (4 S)."""
        if value_usd <= 0 or price_usd <= 0:
            raise ValueError(f"pool value and price must be positive, got {value_usd} and {price_usd}")
        return cls(k=value_usd * value_usd / (4 * price_usd))

    def holdings_coin(self, price_usd: float, t_secs: float = 0.0) -> Decimal:
        """x = sqrt(k / S)."""
        if price_usd <= 0:
            raise ValueError(f"price must be positive, got {price_usd}")
        return _coins(math.sqrt(self.k / price_usd))

    def usd_side(self, price_usd: float) -> float:
        """y = sqrt(k S)."""
        return math.sqrt(self.k * price_usd)

    def value_usd(self, price_usd: float) -> float:
        """x S + y = 2 sqrt(k S)."""
        return 2 * math.sqrt(self.k * price_usd)

    def delta_coin(self, price_usd: float) -> float:
        """d(value)/dS = x: the pool's delta is its coins."""
        return math.sqrt(self.k / price_usd)

    def gamma_coin_per_usd(self, price_usd: float) -> float:
        """dx/dS = -x / (2 S)."""
        return -math.sqrt(self.k / price_usd) / (2 * price_usd)


@dataclass(frozen=True, slots=True)
class InventoryPath:
    """Holdings recorded at times: `times_secs` ascending, `quantities_coin` the holding from each time on."""

    times_secs: tuple[float, ...]
    quantities_coin: tuple[Decimal, ...]

    def __post_init__(self) -> None:
        if len(self.times_secs) != len(self.quantities_coin):
            raise ValueError("one quantity per time")
        if any(b < a for a, b in zip(self.times_secs, self.times_secs[1:], strict=False)):
            raise ValueError("inventory times must not go backwards")

    @classmethod
    def from_points(cls, points: Iterable[tuple[float, Decimal]]) -> InventoryPath:
        """From (time, quantity) pairs in any order; of equal times the last one given wins."""
        ordered = sorted(enumerate(points), key=lambda item: (item[1][0], item[0]))
        return cls(tuple(t for _, (t, _q) in ordered), tuple(q for _, (_t, q) in ordered))

    def holdings_coin(self, price_usd: float, t_secs: float) -> Decimal:
        i = bisect_right(self.times_secs, t_secs)
        return self.quantities_coin[i - 1] if i else Decimal(0)


@dataclass(frozen=True, slots=True)
class OptionBook:
    """`contracts` (signed, + long) of one option, held outside the hedging account and valued by Black-76
    at the fixed implied volatility `vol` on the price of its underlying (REFERENCE 1.3).

    `position` is the book as an exchange that publishes no greeks reports it: marked at Black-76's value
    (in coin for a coin-settled option), with `vol` as its mark IV and no delta, so that
    `exposure.asset_deltas` gives it the delta the live bot would: the price-adjusted delta plus, for a
    coin-settled option, its value in the coin. `value_usd` is what the book is worth in USD; at expiry
    (the price then) it is the payoff, and `position` is None from then on: the option has settled.
    """

    instrument: Instrument
    contracts: Decimal
    vol: float

    def __post_init__(self) -> None:
        i = self.instrument
        if not i.is_option or i.strike is None or i.expiry is None:
            raise ValueError(f"{i.symbol} is not an option with a strike and an expiry")
        if not self.vol > 0:
            raise ValueError(f"the implied volatility must be positive, got {self.vol}")

    def _years(self, as_of: datetime) -> float:
        assert self.instrument.expiry is not None
        return years_to_expiry(self.instrument.expiry, as_of)

    def value_usd(self, price_usd: Decimal, as_of: datetime) -> Decimal:
        """contracts x contract size x the option's Black-76 price in USD: its intrinsic value at and after
        expiry."""
        i = self.instrument
        assert i.strike is not None
        one = black76_price_usd(float(price_usd), float(i.strike), self._years(as_of), self.vol, i.is_call)
        return self.contracts * i.contract_size * Decimal(repr(one))

    def expired(self, as_of: datetime) -> bool:
        return self._years(as_of) <= 0

    def position(self, price_usd: Decimal, as_of: datetime) -> Position | None:
        """The open position at `as_of` (None at and after expiry), marked at Black-76's value (its entry
        price too: only the mark counts)."""
        i = self.instrument
        if self.expired(as_of):
            return None
        assert i.strike is not None
        model = greeks(float(price_usd), float(i.strike), self._years(as_of), self.vol, i.is_call)
        mark = Decimal(repr(model.premium_coin if i.coin_settled else model.price_usd))
        return Position(i.symbol, self.contracts, mark, mark, mark_iv=self.vol)
