"""Bybit v5 REST market data: server time, instruments, tickers, order books, funding history and
risk limits (public endpoints)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.sim.bybit import options, serializers
from deltakeeper.sim.bybit.protocol import (
    INVERSE,
    LINEAR,
    OPTION,
    PARAM_ERROR,
    SPOT,
    BybitError,
    fmt,
    page,
    page_limit,
)
from deltakeeper.sim.bybit.rest_call import Call, base_coin_matches, tick_size
from deltakeeper.sim.bybit.venue import BybitVenue, to_ms


async def server_time(call: Call) -> dict[str, Any]:
    now_ns = time.time_ns()
    return {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}


_CONTRACT_TYPES = {(False, False): "LinearPerpetual", (False, True): "InversePerpetual",
                   (True, False): "LinearFutures", (True, True): "InverseFutures"}
"""Bybit's `contractType` by (dated future, inverse)."""


def delivery_ms(instrument: Instrument) -> int:
    """A dated future's `deliveryTime`, 0 for a perpetual (as Bybit sends it). The one time the venue
    sends unstamped (`BybitVenue.stamp_ms`): the simulated expiry, the date in the contract's name, from
    which ccxt builds its unified symbol. Stamped on the wall clock, an accelerated simulation would give
    two quarterlies the same date, and ccxt one symbol for both."""
    return int(instrument.expiry.timestamp() * 1000) if instrument.expiry is not None else 0


def _instrument(venue: BybitVenue, category: str, symbol: str, instrument: Instrument) -> dict[str, Any]:
    tick = tick_size(instrument)
    common = {"symbol": symbol, "baseCoin": instrument.base, "quoteCoin": instrument.quote,
              "status": "Trading", "symbolType": ""}
    if category == SPOT:
        return {
            **common,
            "innovation": "0",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": fmt(instrument.lot_step_contracts),
                "quotePrecision": "0.00000001",
                "minOrderQty": fmt(instrument.min_contracts),
                "maxOrderQty": "1000000",
                "minOrderAmt": fmt(instrument.min_notional_usd),
                "maxOrderAmt": "8000000",
                "maxLimitOrderQty": "1000000",
                "maxMarketOrderQty": "500000",
            },
            "priceFilter": {"tickSize": fmt(tick)},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        }
    return {
        **common,
        "contractType": _CONTRACT_TYPES[(instrument.kind is Kind.FUTURE, instrument.inverse)],
        "launchTime": str(venue.launch_ms),
        "deliveryTime": str(delivery_ms(instrument)),
        "deliveryFeeRate": "0" if instrument.kind is Kind.FUTURE else "",
        "priceScale": str(max(0, -tick.normalize().adjusted())),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": fmt(tick), "maxPrice": "1999999.80", "tickSize": fmt(tick)},
        "lotSizeFilter": {
            "maxOrderQty": "1000000",
            "minOrderQty": fmt(instrument.min_contracts),
            "qtyStep": fmt(instrument.lot_step_contracts),
            "postOnlyMaxOrderQty": "1000000",
            "maxMktOrderQty": "500000",
            "minNotionalValue": fmt(instrument.min_notional_usd) if category == LINEAR else "",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": (instrument.funding_interval_secs or 0) // 60,
        "settleCoin": instrument.settle,
        "copyTrading": "both" if category == LINEAR else "none",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "displayName": "",
        "forbidUplWithdrawal": False,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "isPreListing": False,
        "preListingInfo": None,
    }


def _option_instrument(venue: BybitVenue, symbol: str, instrument: Instrument) -> dict[str, Any]:
    assert instrument.expiry is not None
    return options.instrument_row(instrument, symbol, venue.launch_ms, to_ms(instrument.expiry))


async def instruments_info(call: Call) -> dict[str, Any]:
    category = call.category()
    listed = call.venue.listed(category) if call.get("status", "Trading") == "Trading" else []
    rows = [
        _option_instrument(call.venue, symbol, instrument) if category == OPTION
        else _instrument(call.venue, category, symbol, instrument)
        for symbol, instrument in listed
        if call.get("symbol") in ("", symbol) and call.get("baseCoin") in ("", instrument.base)
    ]
    if category == SPOT:
        return {"category": category, "list": rows}
    items, cursor = call.page(rows, 500, 1000)
    return {"category": category, "list": items, "nextPageCursor": cursor}


def ticker_item(venue: BybitVenue, category: str, symbol: str, instrument: Instrument, *,
                stream: bool) -> dict[str, Any] | None:
    quote = venue.engine.quote(instrument.symbol)
    if quote is None:
        return None
    bids, asks = venue.engine.book(instrument.symbol, 1)
    touch = (bids[0][1] if bids else Decimal(0), asks[0][1] if asks else Decimal(0))
    if category == OPTION:
        return options.ticker(instrument, symbol, quote, venue.stats[instrument.symbol], touch,
                              venue.open_interest(instrument), stream=stream)
    return serializers.ticker(instrument, category, symbol, quote, venue.stats[instrument.symbol], touch,
                              venue.funding_now(instrument), venue.open_interest(instrument), stream=stream,
                              delivery_ms=delivery_ms(instrument))


async def tickers(call: Call) -> dict[str, Any]:
    category = call.category()
    if call.get("symbol"):
        call.venue.market(category, call.get("symbol"))
    items = (ticker_item(call.venue, category, symbol, instrument, stream=False)
             for symbol, instrument in call.venue.listed(category)
             if call.get("symbol") in ("", symbol) and base_coin_matches(call, category, instrument))
    return {"category": category, "list": [item for item in items if item is not None]}


def book_item(venue: BybitVenue, symbol: str, instrument: Instrument, depth: int) -> dict[str, Any]:
    bids, asks = venue.engine.book(instrument.symbol, depth)
    quote = venue.engine.quote(instrument.symbol)
    ts = venue.stamp_ms(quote.ts) if quote else venue.now_ms()
    update = venue.book_updates[instrument.symbol]
    return {
        "s": symbol,
        "b": [[fmt(price), fmt(size)] for price, size in bids],
        "a": [[fmt(price), fmt(size)] for price, size in asks],
        "ts": ts,
        "u": update,
        "seq": update,
        "cts": ts,
    }


async def orderbook(call: Call) -> dict[str, Any]:
    category = call.category()
    instrument = call.venue.market(category, call.get("symbol"))
    default, maximum = (1, 200) if category == SPOT else (25, 500)
    depth = page_limit(call.get("limit") or None, default, maximum)
    return book_item(call.venue, call.get("symbol"), instrument, depth)


async def funding_history(call: Call) -> dict[str, Any]:
    category = call.category((LINEAR, INVERSE))
    instrument = call.venue.market(category, call.get("symbol"))
    start, end = call.ms("startTime"), call.ms("endTime")
    if start is not None and end is None:
        raise BybitError(PARAM_ERROR, "endTime is required when startTime is passed")
    limit = page_limit(call.get("limit") or None, 200, 200)
    rows = [
        {"symbol": call.get("symbol"), "fundingRate": fmt(rate), "fundingRateTimestamp": str(ms)}
        for ms, rate in reversed(call.venue.funding_history[instrument.symbol])
        if (start is None or ms >= start) and (end is None or ms <= end)
    ]
    return {"category": category, "list": rows[:limit]}


RISK_PAGE_SYMBOLS = 15


async def risk_limit(call: Call) -> dict[str, Any]:
    category = call.category((LINEAR, INVERSE))
    if call.get("symbol"):
        call.venue.market(category, call.get("symbol"))
    markets = [(s, i) for s, i in call.venue.listed(category) if call.get("symbol") in ("", s)]
    chosen, cursor = page(markets, RISK_PAGE_SYMBOLS, call.get("cursor"))
    rows = []
    for symbol, _ in chosen:
        for tier, ((limit_usd, mmr, imr, leverage), deduction) in enumerate(
                zip(serializers.RISK_TIERS, serializers.MM_DEDUCTIONS, strict=True), start=1):
            rows.append({
                "id": tier,
                "symbol": symbol,
                "riskLimitValue": serializers.risk_limit_value(limit_usd, category),
                "maintenanceMargin": fmt(mmr),
                "initialMargin": fmt(imr),
                "isLowestRisk": 1 if tier == 1 else 0,
                "maxLeverage": f"{leverage:.2f}",
                "mmDeduction": serializers.risk_limit_value(deduction, category) if deduction else "",
            })
    return {"category": category, "list": rows, "nextPageCursor": cursor}
