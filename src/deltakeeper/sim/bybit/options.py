"""Bybit's USDC options in the emulator (category `option`): the listing, the option ticker with its greeks
and the greeks of an option position, as Bybit v5 shows them (market/instruments-info, market/tickers,
the public `tickers.{symbol}` topic, position/list).

An option is quoted by the feed (`sim.feeds.with_option_quotes`): its mark is Black-76's value on the
underlying's index (r = 0, so the index is also the forward, `underlyingPrice`) at the quote's mark IV
(`OptionQuote.mark_iv`), priced in USD and settled in USDC. Its greeks are Black-76's at that IV
(`domain.greeks`), in Bybit's units: `delta` per option (a coin of underlying), `gamma` per USD of the
underlying, `vega` in USD per vol point (1%), `theta` in USD per day, each to 8 decimals. A position's greeks
are the option's times its signed size (a short call's delta is negative), so that the position's `delta`
is exactly `size x` the ticker's.

An option's `deliveryTime` is its expiry in simulated time, unlike the emulator's event timestamps (wall
time, `BybitVenue.stamp_ms`): it is the contract's term, and ccxt names an option by its expiry's date, which
at an accelerated speed would be one wall day for every expiry. The option is listed, and quoted, until the
simulated clock reaches it (then the engine settles it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from deltakeeper.domain.exposure import Position, years_to_expiry
from deltakeeper.domain.greeks import black76_price_usd, d1_d2, greeks, norm_pdf
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Quote
from deltakeeper.sim.bybit.protocol import fmt
from deltakeeper.sim.bybit.records import DAY_MS, MarketStats
from deltakeeper.sim.markets import OPTION_PRICE_TICK

GREEK_QUANTUM = Decimal("1E-8")
DELIVERY_FEE_RATE = Decimal("0.00015")
MAX_ORDER_QTY = Decimal(10_000)
_IV_SEARCH_STEPS = 60
_IV_MAX = 5.0


@dataclass(frozen=True, slots=True)
class Greeks:
    """One option's greeks in Bybit's units (module notes), each to 8 decimals."""

    delta: Decimal
    gamma: Decimal
    vega: Decimal
    theta: Decimal
    mark_iv: Decimal

    def times(self, contracts: Decimal) -> dict[str, str]:
        """A position's greeks: the option's times its signed size."""
        return {"delta": fmt(contracts * self.delta), "gamma": fmt(contracts * self.gamma),
                "vega": fmt(contracts * self.vega), "theta": fmt(contracts * self.theta)}


def option_greeks(instrument: Instrument, quote: Quote) -> Greeks | None:
    """Black-76's greeks of the option at its quote's mark IV and underlying price, at the quote's time;
    None for a quote without them (or an expired option)."""
    vol = getattr(quote, "mark_iv", None)
    if not vol or not quote.index or instrument.strike is None or instrument.expiry is None:
        return None
    years = years_to_expiry(instrument.expiry, quote.ts)
    if years <= 0:
        return None
    forward, strike = float(quote.index), float(instrument.strike)
    model = greeks(forward, strike, years, vol, instrument.is_call)
    d1, _ = d1_d2(forward, strike, years, vol)
    theta_per_year = -forward * norm_pdf(d1) * vol / (2 * math.sqrt(years))
    return Greeks(
        delta=_greek(model.delta), gamma=_greek(model.gamma_per_usd), vega=_greek(model.vega_usd / 100),
        theta=_greek(theta_per_year / 365), mark_iv=_greek(vol),
    )


def implied_vol(price_usd: Decimal, instrument: Instrument, quote: Quote) -> Decimal:
    """The vol at which Black-76 gives `price_usd` (a bid or an ask), by bisection; 0 where no vol does
    (a price at or below the intrinsic value, a zero bid)."""
    if not quote.index or instrument.strike is None or instrument.expiry is None or price_usd <= 0:
        return ZERO
    years = years_to_expiry(instrument.expiry, quote.ts)
    forward, strike, target = float(quote.index), float(instrument.strike), float(price_usd)

    def value(vol: float) -> float:
        return black76_price_usd(forward, strike, years, vol, instrument.is_call)

    low, high = 0.0, _IV_MAX
    if years <= 0 or not value(low) < target < value(high):
        return ZERO
    for _ in range(_IV_SEARCH_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if value(middle) < target else (low, middle)
    return Decimal(repr((low + high) / 2)).quantize(Decimal("1E-4"))


def _greek(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(GREEK_QUANTUM)


def instrument_row(instrument: Instrument, symbol: str, launch_ms: int, delivery_ms: int) -> dict[str, Any]:
    """The option's entry in `/v5/market/instruments-info?category=option`."""
    return {
        "symbol": symbol,
        "status": "Trading",
        "baseCoin": instrument.base,
        "quoteCoin": instrument.quote,
        "settleCoin": instrument.settle,
        "optionsType": "Call" if instrument.is_call else "Put",
        "launchTime": str(launch_ms),
        "deliveryTime": str(delivery_ms),
        "deliveryFeeRate": fmt(DELIVERY_FEE_RATE),
        "priceFilter": {"minPrice": fmt(OPTION_PRICE_TICK), "maxPrice": "10000000",
                        "tickSize": fmt(OPTION_PRICE_TICK)},
        "lotSizeFilter": {"maxOrderQty": fmt(MAX_ORDER_QTY), "minOrderQty": fmt(instrument.min_contracts),
                          "qtyStep": fmt(instrument.lot_step_contracts)},
        "displayName": "",
    }


def ticker(instrument: Instrument, symbol: str, quote: Quote, stats: MarketStats,
           touch_sizes: tuple[Decimal, Decimal], open_interest: Decimal, *, stream: bool) -> dict[str, Any]:
    """The option's ticker: REST (`bid1Price`, `markIv`...) or the websocket's (`bidPrice`,
    `markPriceIv`...), with its greeks (empty where the quote carries no IV)."""
    now_ms = int(quote.ts.timestamp() * 1000)
    last = quote.mid
    high, low = stats.high_low()
    volume, turnover = stats.volume()
    prev_24h = stats.price_ago(now_ms, DAY_MS) or last
    model = option_greeks(instrument, quote)
    book = "" if stream else "1"
    return {
        "symbol": symbol,
        f"bid{book}Price": fmt(quote.bid),
        f"bid{book}Size": fmt(touch_sizes[0]),
        f"bid{book}Iv": fmt(implied_vol(quote.bid, instrument, quote)),
        f"ask{book}Price": fmt(quote.ask),
        f"ask{book}Size": fmt(touch_sizes[1]),
        f"ask{book}Iv": fmt(implied_vol(quote.ask, instrument, quote)),
        "lastPrice": fmt(last),
        "highPrice24h": fmt(high or last),
        "lowPrice24h": fmt(low or last),
        "markPrice": fmt(quote.mark),
        "indexPrice": fmt(quote.index or ZERO),
        "markPriceIv" if stream else "markIv": fmt(model.mark_iv) if model else "",
        "underlyingPrice": fmt(quote.index or ZERO),
        "openInterest": fmt(open_interest),
        "turnover24h": fmt(turnover),
        "volume24h": fmt(volume),
        "totalVolume": fmt(volume),
        "totalTurnover": fmt(turnover),
        "delta": fmt(model.delta) if model else "",
        "gamma": fmt(model.gamma) if model else "",
        "vega": fmt(model.vega) if model else "",
        "theta": fmt(model.theta) if model else "",
        "predictedDeliveryPrice": "0",
        "change24h": fmt(round(last / prev_24h - 1, 8)),
    }


def position_greeks(instrument: Instrument, held: Position | None, quote: Quote | None) -> dict[str, str]:
    """The greeks of an option position (`delta`, `gamma`, `vega`, `theta`): the option's times the
    signed size; zeros for a flat position or before the option has a quote with an IV."""
    model = option_greeks(instrument, quote) if quote is not None else None
    if model is None:
        return dict.fromkeys(("delta", "gamma", "vega", "theta"), "0")
    return model.times(held.contracts * instrument.contract_size if held is not None else ZERO)
