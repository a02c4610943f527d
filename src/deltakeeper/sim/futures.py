"""Quotes of the simulated dated futures, priced from their underlying.

A quarterly's fair price is the underlying (spot) price times `1 + basis_annual x years to expiry`: a
simple-interest annualised basis (contango when positive) that decays linearly to zero at expiry, so the
future converges on spot and settles at it. Deterministic: the same underlying price and time give the
same quote. Bid and ask sit `spread_bps` apart around it, rounded outwards to the asset's price tick; the
mark is the mid, the index the underlying. Futures pay no funding (`funding_rate` None).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.orders import Quote
from deltakeeper.sim.feeds import Feed
from deltakeeper.sim.markets import ASSETS

DEFAULT_BASIS_ANNUAL = Decimal("0.08")
"""8% a year: a typical contango of BTC quarterlies."""
DEFAULT_SPREAD_BPS = Decimal(2)
_SECS_PER_YEAR = Decimal(365 * 86_400)
_BPS = Decimal(10_000)


def future_fair_price(underlying_usd: Decimal, expiry: datetime, ts: datetime,
                      basis_annual: Decimal = DEFAULT_BASIS_ANNUAL) -> Decimal:
    """`underlying x (1 + basis_annual x years to expiry)`; the underlying itself at and after expiry."""
    secs = max(Decimal((expiry - ts).total_seconds()), Decimal(0))
    return underlying_usd * (1 + basis_annual * secs / _SECS_PER_YEAR)


def future_quote(instrument: Instrument, ts: datetime, underlying_usd: Decimal,
                 basis_annual: Decimal = DEFAULT_BASIS_ANNUAL,
                 spread_bps: Decimal = DEFAULT_SPREAD_BPS) -> Quote:
    """The quote of a dated future at `ts` (see the module's rule)."""
    if instrument.expiry is None:
        raise ValueError(f"{instrument.symbol} has no expiry")
    asset = ASSETS.get(instrument.base)
    tick = asset.price_tick if asset else Decimal("0.01")
    fair = future_fair_price(underlying_usd, instrument.expiry, ts, basis_annual)
    half = fair * spread_bps / _BPS / 2
    bid = ((fair - half) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    ask = max(((fair + half) / tick).to_integral_value(rounding=ROUND_CEILING) * tick, bid + tick)
    return Quote(instrument.symbol, bid, ask, (bid + ask) / 2, ts, index=underlying_usd)


def with_future_quotes(feed: Feed, futures: Mapping[str, Instrument],
                       basis_annual: Decimal = DEFAULT_BASIS_ANNUAL,
                       spread_bps: Decimal = DEFAULT_SPREAD_BPS) -> Feed:
    """`feed`, with a quote for each unexpired future after its underlying's quotes at every tick, priced
    on the underlying's index (its spot price)."""
    by_base: dict[str, list[Instrument]] = {}
    for instrument in futures.values():
        by_base.setdefault(instrument.base, []).append(instrument)
    for ts, quotes in feed:
        extra: list[Quote] = []
        for base, listed in by_base.items():
            index = next((q.index for q in quotes if q.symbol.split("/")[0] == base and q.index), None)
            if index is None:
                continue
            extra.extend(future_quote(i, ts, index, basis_annual, spread_bps) for i in listed
                         if i.expiry is not None and i.expiry > ts)
        yield ts, quotes + extra
