"""What a replay hedges (backtest/replay.py): each asset's exposure model and options book, and its hedge
market: a linear perpetual, (`quarterly`) the nearest quarterly future, rolled in the replay by the
decision cycle as live, or (`carry`) either, chosen by carry by the decision cycle as live
(`app.hedge_choice`); the quarterlies are priced off the asset's price events (`sim.futures`), and the
perpetual's quote carries the funding rate last settled in the data (`funding_per_8h`)."""

from __future__ import annotations

import bisect
import math
from datetime import datetime, timedelta
from decimal import Decimal

from deltakeeper.backtest.data import ExposureSpec, coin_settled_call, linear_perp, price_decimals
from deltakeeper.backtest.dataset import AssetSeries, Dataset
from deltakeeper.backtest.settings import BacktestSettings
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure_models import (
    COIN_QUANTUM,
    ConstantProductPool,
    ExposureModel,
    OptionBook,
    StaticHoldings,
)
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.roll import nearest_quarterly
from deltakeeper.sim.futures import future_quote
from deltakeeper.sim.markets import ASSETS, future_instruments

QUARTERLY = "quarterly"
CARRY = "carry"
_DAYS_PER_QUARTER = 91
_SECS_PER_8H = 8 * 3600


def exposure_model(data: Dataset, cfg: BacktestSettings, asset: str, first_price: float) -> ExposureModel:
    spec = data.exposure
    if spec.kind == "lp":
        return ConstantProductPool.from_value(float(spec.value_usd), first_price)
    if spec.kind == "inventory":
        return data.inventory.get(asset) or StaticHoldings(ZERO)
    if spec.kind == "calls":
        return StaticHoldings(cfg.external_coin.get(asset, ZERO))
    held = cfg.external_coin.get(asset)
    if held is None:
        held = (spec.value_usd / Decimal(repr(first_price))).quantize(COIN_QUANTUM)
    return StaticHoldings(held)


def option_book(spec: ExposureSpec, cfg: BacktestSettings, series: AssetSeries) -> OptionBook | None:
    """`calls:N:STRIKE_PCT:DAYS`: the calls on the asset, struck at STRIKE_PCT % of its first mid (to the
    price tick), expiring DAYS after its first price event."""
    if spec.kind != "calls":
        return None
    first = series.events[0]
    tick = Decimal(1).scaleb(-price_decimals(series.asset, first.price))
    strike = (first.quote.mark * spec.strike_pct / 100).quantize(tick)
    expiry = first.ts + timedelta(days=float(spec.expiry_days))
    return OptionBook(coin_settled_call(series.asset, strike, expiry), spec.calls, cfg.option_vol)


def hedge_markets(data: Dataset, cfg: BacktestSettings) -> dict[str, str]:
    """Hedged asset -> its hedge market: its own linear perpetual (also for `carry`, until the decision
    cycle chooses), `quarterly`, or another asset's perpetual (a proxy hedge, whose market is then a hedge
    market only)."""
    perps = {linear_perp(a).symbol: a for a in data.series}
    wanted = {a: cfg.hedges.get(a, linear_perp(a).symbol) for a in data.series}
    for asset, symbol in wanted.items():
        if symbol == CARRY:
            wanted[asset] = linear_perp(asset).symbol
        elif symbol not in perps and symbol != QUARTERLY:
            raise ConfigError(f"DK_ASSETS__{asset}__HEDGE", "`quarterly`, `carry` or the linear perpetual "
                              "of an asset with --prices", symbol)
    markets = {perps[s] for a, s in wanted.items() if s in perps and perps[s] != a}
    hedges = {a: s for a, s in wanted.items() if a not in markets}
    used = list(hedges.values())
    for asset, symbol in hedges.items():
        if used.count(symbol) > 1:
            raise ConfigError(f"DK_ASSETS__{asset}__HEDGE", "a hedge market no other asset uses", symbol)
    return hedges


def quarterlies(data: Dataset, cfg: BacktestSettings) -> dict[str, Instrument]:
    """The linear quarterlies listed at the first price event on each asset hedged `quarterly` or `carry`,
    enough of them to span the replay and the contract rolled into at its end."""
    wanted = sorted(a for a in data.series if cfg.hedges.get(a) in (QUARTERLY, CARRY))
    for asset in wanted:
        if asset not in ASSETS:
            raise ConfigError(f"DK_ASSETS__{asset}__HEDGE", "a perpetual: the replay lists quarterlies on "
                              + ", ".join(sorted(ASSETS)) + " only", cfg.hedges[asset])
        if cfg.hedges[asset] == CARRY and len(data.funding.get(asset, ())) < 2:
            raise ConfigError("--funding", f"funding rates for {asset}, hedged by carry (at least two: their "
                              "interval)", asset)
    if not wanted:
        return {}
    steps = data.steps()
    start, end = steps[0][1][0].ts, steps[-1][1][0].ts
    count = math.ceil((end - start) / timedelta(days=_DAYS_PER_QUARTER)) + 2
    listed = future_instruments(start, count, tuple(wanted))
    return {s: i for s, i in listed.items() if not i.inverse}


def quarterly_hedge(asset: str, futures: dict[str, Instrument], start: datetime, cfg: BacktestSettings
                    ) -> Instrument:
    future = nearest_quarterly(futures.values(), asset, start, roll_window_secs=cfg.roll_window_secs)
    if future is None:
        raise ConfigError("DK_ROLL_WINDOW_SECS", "a roll window shorter than a quarter", cfg.roll_window_secs)
    return future


def future_quotes(futures: list[Instrument], underlying: Quote) -> list[Quote]:
    """The quotes of the unexpired `futures` on `underlying`'s asset at its price event."""
    index = underlying.index or underlying.mark
    return [future_quote(f, underlying.ts, index) for f in futures
            if f.expiry is not None and f.expiry > underlying.ts]


class FundingPer8h:
    """An asset's funding rate at each price event as the choice by carry reads it from a perpetual's
    ticker, per 8 hours: the rate last settled in the data at or before the event (the live ticker's is
    the current interval's forecast, not known to the data until it settles), each rate scaled from its own
    interval (its gap to the previous rate; the first rate's, to the next), so that a switch from 8h to 4h
    funding or one irregular row rescales only its own rate. None before the first."""

    def __init__(self, rates: tuple[tuple[float, Decimal], ...]) -> None:
        if len(rates) < 2:
            raise ValueError("funding rates: at least two, for their interval")
        self.times = [t for t, _ in rates]
        gaps_secs = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        if min(gaps_secs) <= 0:
            raise ValueError("funding rates: times must increase")
        intervals_secs = [gaps_secs[0], *gaps_secs]
        self.rates_per_8h = [rate * Decimal(_SECS_PER_8H) / Decimal(repr(interval_secs))
                             for (_, rate), interval_secs in zip(rates, intervals_secs, strict=True)]

    def at(self, t_secs: float) -> Decimal | None:
        index = bisect.bisect_right(self.times, t_secs) - 1
        return self.rates_per_8h[index] if index >= 0 else None
