"""Binance USD-M's public market data: server time, markets, order book, best bid and ask, mark price and
funding, 24h statistics."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from deltakeeper.domain.instruments import ZERO
from deltakeeper.sim.binance import serializers
from deltakeeper.sim.binance.call import Call, wall_ms
from deltakeeper.sim.binance.protocol import UNKNOWN, BinanceError, fmt
from deltakeeper.sim.binance.venue import BinanceVenue
from deltakeeper.sim.markets import ASSETS

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


def tick_size(base: str) -> Decimal:
    asset = ASSETS.get(base)
    return asset.price_tick if asset else Decimal("0.01")


def _selected(call: Call, item: Callable[[str], dict[str, Any] | None]) -> Any:
    """One symbol's item when `symbol` is given, else every market's, as Binance's price endpoints answer."""
    if call.get("symbol"):
        call.venue.market(call.get("symbol"))
        found = item(call.get("symbol"))
        if found is None:
            raise BinanceError(UNKNOWN, "No price yet.")
        return found
    return [entry for symbol in sorted(call.venue.markets) if (entry := item(symbol)) is not None]


async def ping(call: Call) -> dict[str, Any]:
    return {}


async def server_time(call: Call) -> dict[str, Any]:
    return {"serverTime": wall_ms()}


async def exchange_info(call: Call) -> dict[str, Any]:
    venue = call.venue
    return {
        "timezone": "UTC", "serverTime": wall_ms(), "futuresType": "U_MARGINED",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                        "limit": 2400},
                       {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
        "exchangeFilters": [],
        "assets": [{"asset": coin, "marginAvailable": True, "autoAssetExchange": "0"}
                   for coin in sorted({i.settle for i in venue.markets.values()})],
        "symbols": [serializers.exchange_symbol(symbol, i, tick_size(i.base), venue.launch_ms)
                    for symbol, i in sorted(venue.markets.items())],
    }


async def depth(call: Call) -> dict[str, Any]:
    instrument = call.venue.market(call.get("symbol"))
    limit = int(call.get("limit") or 500)
    if limit not in DEPTH_LIMITS:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    bids, asks = call.venue.engine.book(instrument.symbol, limit)
    now_ms = call.venue.now_ms()
    return {"lastUpdateId": call.venue.book_updates[instrument.symbol], "E": now_ms, "T": now_ms,
            "bids": [[fmt(p), fmt(q)] for p, q in bids], "asks": [[fmt(p), fmt(q)] for p, q in asks]}


def book_ticker_item(venue: BinanceVenue, symbol: str, *, stream: bool) -> dict[str, Any] | None:
    instrument = venue.markets[symbol]
    quote = venue.engine.quote(instrument.symbol)
    if quote is None:
        return None
    bids, asks = venue.engine.book(instrument.symbol, 1)
    bid = bids[0] if bids else (quote.bid, ZERO)
    ask = asks[0] if asks else (quote.ask, ZERO)
    return serializers.book_ticker(symbol, bid, ask, venue.book_updates[instrument.symbol],
                                   venue.stamp_ms(quote.ts), stream=stream)


async def book_ticker(call: Call) -> Any:
    return _selected(call, lambda symbol: book_ticker_item(call.venue, symbol, stream=False))


async def premium_index(call: Call) -> Any:
    venue = call.venue

    def item(symbol: str) -> dict[str, Any] | None:
        instrument = venue.markets[symbol]
        quote = venue.engine.quote(instrument.symbol)
        if quote is None:
            return None
        return serializers.premium_index(symbol, quote, venue.funding_now(instrument), venue.now_ms())

    return _selected(call, item)


async def ticker_24hr(call: Call) -> Any:
    venue = call.venue

    def item(symbol: str) -> dict[str, Any] | None:
        quote = venue.engine.quote(venue.markets[symbol].symbol)
        if quote is None:
            return None
        now_ms = venue.now_ms()
        return {"symbol": symbol, "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice":
                fmt(quote.mid), "lastPrice": fmt(quote.mid), "lastQty": "0", "openPrice": fmt(quote.mid),
                "highPrice": fmt(quote.mid), "lowPrice": fmt(quote.mid), "volume": "0", "quoteVolume": "0",
                "openTime": now_ms - 86_400_000, "closeTime": venue.stamp_ms(quote.ts), "firstId": 0,
                "lastId": 0, "count": 0}

    return _selected(call, item)
