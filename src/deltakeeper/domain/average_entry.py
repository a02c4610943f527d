"""A position's average entry and realised PnL as fills add to it, reduce it or flip it (REFERENCE 1.2):
the one implementation behind the simulated exchange's positions and the journal's PnL attribution.

Sizes are signed (+ long) in any unit (contracts, coins, USD face); prices in USD. Linear contracts
average the entry arithmetically in price and earn `size x (exit - entry)` (quote currency); inverse ones
average it harmonically and earn `size x (1/entry - 1/exit)` (coin, for a size in USD face).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Filled:
    """A position after a fill: its signed `size`, its average `entry` (0 when flat) and the signed size
    the fill `closed` (+ a long reduced, - a short; 0 when the fill only added)."""

    size: Decimal
    entry: Decimal
    closed: Decimal


def fill_position(
    size: Decimal, entry: Decimal, change: Decimal, price: Decimal, *, inverse: bool,
    quantum: Decimal | None = None,
) -> Filled:
    """The position `size` at `entry` after a fill of signed `change` at `price`. Adding averages the
    entry (rounded to `quantum` when given); reducing keeps it; flipping opens the rest at `price`."""
    new_size = size + change
    if size == 0 or (size > 0) == (change > 0):
        return Filled(new_size, average_entry(size, entry, change, price, inverse=inverse, quantum=quantum),
                      ZERO)
    closed = min(abs(change), abs(size)) * (1 if size > 0 else -1)
    if new_size == 0:
        return Filled(new_size, ZERO, closed)
    flipped = (new_size > 0) != (size > 0)
    return Filled(new_size, price if flipped else entry, closed)


def average_entry(
    size: Decimal, entry: Decimal, added: Decimal, price: Decimal, *, inverse: bool,
    quantum: Decimal | None = None,
) -> Decimal:
    """The entry of `size` at `entry` plus `added` (the same direction) at `price`: `price` for a new
    position, else the arithmetic (linear) or harmonic (inverse) mean weighted by size."""
    held, new = abs(size), abs(added)
    if held == 0:
        return price
    if inverse:
        mean = (held + new) / (held / entry + new / price)
    else:
        mean = (held * entry + new * price) / (held + new)
    return mean if quantum is None else mean.quantize(quantum)


def realised_pnl(closed: Decimal, entry: Decimal, price: Decimal, *, inverse: bool) -> Decimal:
    """The PnL of closing signed `closed` (+ a long) opened at `entry` at `price`: `closed x (price -
    entry)` linear, `closed x (1/entry - 1/price)` inverse."""
    if inverse:
        return closed * (1 / entry - 1 / price)
    return closed * (price - entry)
