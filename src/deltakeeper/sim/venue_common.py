"""What every wire dialect of the emulator (Bybit v5, Binance USD-M) computes the same way over the one
engine: wall-clock stamps of simulated events, a perpetual's current funding rate and next settlement, a
coin's USD price, and the PnL a fill realises on the position it reduces."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Fill
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import WALLET_QUANTUM, SimEngine


def to_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def stamp_ms(clock: SimClock, sim_time: datetime) -> int:
    """The timestamp, in ms since the epoch on the wall clock, of what happens at simulated `sim_time`."""
    return to_ms(clock.wall_time(sim_time))


def funding_now(engine: SimEngine, clock: SimClock, instrument: Instrument) -> tuple[Decimal, int] | None:
    """(current funding rate, next funding time in wall ms) of a perpetual; None for other markets."""
    interval = instrument.funding_interval_secs
    if not interval:
        return None
    quote = engine.quote(instrument.symbol)
    rate = quote.funding_rate if quote and quote.funding_rate is not None else None
    next_secs = (math.floor(clock.now().timestamp() / interval) + 1) * interval
    next_ms = stamp_ms(clock, datetime.fromtimestamp(next_secs, UTC))
    return (rate if rate is not None else engine.default_funding_rate), next_ms


def usd_price(engine: SimEngine, coin: str) -> Decimal | None:
    """The mid of `coin`'s USD-margined spot market, None when it has none or no quote yet."""
    for instrument in engine.instruments.values():
        if not instrument.is_derivative and instrument.base == coin and instrument.usd_margined:
            quote = engine.quote(instrument.symbol)
            if quote is not None:
                return quote.mid
    return None


def realised_pnl(instrument: Instrument, held_contracts: Decimal, entry_price: Decimal,
                 fill: Fill) -> tuple[Decimal, Decimal]:
    """(contracts closed, PnL realised before fees) of `fill` on a position of `held_contracts` (signed)
    entered at `entry_price`, as the engine counts it."""
    signed = fill.side.sign * fill.amount_contracts
    if not held_contracts or (held_contracts > 0) == (signed > 0):
        return ZERO, ZERO
    closed = min(abs(signed), abs(held_contracts))
    direction = 1 if held_contracts > 0 else -1
    if instrument.inverse:
        realised = direction * closed * instrument.contract_size * (1 / entry_price - 1 / fill.price)
    else:
        realised = direction * closed * instrument.contract_size * (fill.price - entry_price)
    return closed, realised.quantize(WALLET_QUANTUM)
