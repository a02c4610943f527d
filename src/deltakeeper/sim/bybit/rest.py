"""Bybit v5 REST: one routing table, one dispatcher (faults, parameters, authentication, envelope).

Page sizes, defaults and time windows follow https://bybit-exchange.github.io/docs/v5/ for each path."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import OrderState
from deltakeeper.sim.bybit import options, serializers
from deltakeeper.sim.bybit.auth import check_rest
from deltakeeper.sim.bybit.protocol import (
    CATEGORIES,
    INVERSE,
    LINEAR,
    OPTION,
    PARAM_ERROR,
    RATE_LIMITED,
    ROUTE_NOT_FOUND,
    SERVER_ERROR,
    SPOT,
    BybitError,
    envelope,
    fmt,
    page,
    page_limit,
)
from deltakeeper.sim.bybit.records import OrderMeta
from deltakeeper.sim.bybit.venue import RECENT_CLOSED_ORDERS, BybitVenue, to_ms, user_id
from deltakeeper.sim.markets import ASSETS

logger = logging.getLogger(__name__)
VENUE = web.AppKey("venue", BybitVenue)
WEEK_MS = 7 * 86_400_000


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Call:
    venue: BybitVenue
    account: str
    params: Mapping[str, Any]
    request: web.Request

    def get(self, name: str, default: str = "") -> str:
        value = self.params.get(name)
        return default if value is None else str(value)

    def category(self, allowed: Iterable[str] = CATEGORIES) -> str:
        category = self.get("category")
        if category not in allowed:
            raise BybitError(PARAM_ERROR, f"Illegal category: {category or 'empty'}")
        return category

    def ms(self, name: str) -> int | None:
        raw = self.get(name)
        if not raw:
            return None
        if not raw.isdigit():
            raise BybitError(PARAM_ERROR, f"params error: {name} invalid")
        return int(raw)

    def week(self) -> tuple[int, int]:
        """[start, end] in ms by Bybit's rule: 7 days back from now by default, from startTime or back
        from endTime when only one is given, and at most 7 days when both are."""
        start, end = self.ms("startTime"), self.ms("endTime")
        if start is None:
            end = self.venue.now_ms() if end is None else end
            return end - WEEK_MS, end
        if end is None:
            return start, start + WEEK_MS
        if end < start or end - start > WEEK_MS:
            raise BybitError(PARAM_ERROR, "The time range between startTime and endTime must be <= 7 days")
        return start, end

    def page(self, items: list[Any], default: int, maximum: int) -> tuple[list[Any], str]:
        return page(items, page_limit(self.get("limit") or None, default, maximum), self.get("cursor"))


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    private: bool
    per_sec: int = 0
    """Bybit's per-UID limit on the path, requests in any rolling second (private paths only)."""


LIMIT_WINDOW_MS = 1000


def tick_size(instrument: Instrument) -> Decimal:
    asset = ASSETS.get(instrument.base)
    return asset.price_tick if asset else Decimal("0.01")


# market data


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


def _base_coin_matches(call: Call, category: str, instrument: Instrument) -> bool:
    """Bybit's `baseCoin` filter, which applies to options only."""
    return category != OPTION or call.get("baseCoin") in ("", instrument.base)


async def tickers(call: Call) -> dict[str, Any]:
    category = call.category()
    if call.get("symbol"):
        call.venue.market(category, call.get("symbol"))
    items = (ticker_item(call.venue, category, symbol, instrument, stream=False)
             for symbol, instrument in call.venue.listed(category)
             if call.get("symbol") in ("", symbol) and _base_coin_matches(call, category, instrument))
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


# account


def _coins(venue: BybitVenue) -> list[str]:
    coins = {i.base for i in venue.engine.instruments.values()}
    coins |= {i.settle for i in venue.engine.instruments.values()}
    return sorted(coins - {"USD"})


async def coin_info(call: Call) -> dict[str, Any]:
    rows = []
    for coin in _coins(call.venue):
        if call.get("coin") and call.get("coin") != coin:
            continue
        chain = "ETH" if coin == "USDT" else coin
        rows.append({
            "name": coin,
            "coin": coin,
            "remainAmount": "5000000",
            "chains": [{
                "chainType": chain,
                "confirmation": "10",
                "withdrawFee": "0.001" if coin != "USDT" else "1",
                "depositMin": "0",
                "withdrawMin": "0.01" if coin != "USDT" else "10",
                "chain": chain,
                "chainDeposit": "1",
                "chainWithdraw": "1",
                "minAccuracy": "8",
                "withdrawPercentageFee": "0",
                "contractAddress": "",
                "safeConfirmNumber": "5",
            }],
        })
    return {"rows": rows}


async def api_key_info(call: Call) -> dict[str, Any]:
    launch = datetime.fromtimestamp(call.venue.launch_ms / 1000, UTC)
    wallet = ["AccountTransfer", "SubMemberTransfer"] + (["Withdraw"] if call.venue.allow_withdraw else [])
    return {
        "id": str(int(hashlib.sha256(call.account.encode()).hexdigest()[:8], 16)),
        "note": "deltakeeper Bybit emulator",
        "apiKey": call.account,
        "readOnly": 0,
        "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"],
            "Spot": ["SpotTrade"],
            "Wallet": wallet,
            "Options": ["OptionsTrade"],
            "Derivatives": ["DerivativesTrade"],
            "CopyTrading": [],
            "BlockTrade": [],
            "Exchange": ["ExchangeHistory"],
            "NFT": [],
            "Affiliate": [],
            "Earn": [],
        },
        "ips": ["*"],
        "type": 1,
        "deadlineDay": 90,
        "expiredAt": (launch + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "createdAt": launch.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "unified": 0,
        "uta": 1,
        "userID": user_id(call.account),
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
        "parentUid": "0",
        "kycLevel": "LEVEL_DEFAULT",
        "kycRegion": "",
    }


async def account_info(call: Call) -> dict[str, Any]:
    return {
        "marginMode": call.venue.margin_mode,
        "updatedTime": str(call.venue.launch_ms),
        "unifiedMarginStatus": 5,
        "dcpStatus": "OFF",
        "timeWindow": 10,
        "smpGroup": 0,
        "isMasterTrader": False,
        "spotHedgingStatus": "OFF",
    }


async def wallet_balance(call: Call) -> dict[str, Any]:
    if call.get("accountType") != "UNIFIED":
        raise BybitError(PARAM_ERROR, "accountType only support UNIFIED.")
    item = call.venue.wallet_item(call.account)
    wanted = {coin for coin in call.get("coin").split(",") if coin}
    item["coin"] = [
        c for c in item["coin"]
        if (c["coin"] in wanted if wanted else c["walletBalance"] != "0" or c["equity"] != "0")
    ]
    return {"list": [item]}


async def fee_rate(call: Call) -> dict[str, Any]:
    category = call.category()
    rows = [
        {"symbol": symbol, "takerFeeRate": fmt(i.taker_fee_rate), "makerFeeRate": fmt(i.maker_fee_rate)}
        for symbol, i in call.venue.listed(category)
        if not call.get("symbol") or call.get("symbol") == symbol
    ]
    return {"category": category, "list": rows}


async def position_list(call: Call) -> dict[str, Any]:
    category = call.category((LINEAR, INVERSE, OPTION))
    symbols = {s for s in call.get("symbol").split(",") if s}
    settle = call.get("settleCoin")
    if category == LINEAR and not symbols and not settle:
        raise BybitError(PARAM_ERROR, "symbol or settleCoin is required")
    for symbol in symbols:
        call.venue.market(category, symbol)
    rows = [
        call.venue.position_item(call.account, instrument, held, stream=False)
        for symbol, instrument, held in call.venue.positions(call.account, category)
        if (symbol in symbols if symbols else held is not None and settle in ("", instrument.settle))
        and _base_coin_matches(call, category, instrument)
    ]
    items, cursor = call.page(rows, 20, 200)
    return {"category": category, "list": items, "nextPageCursor": cursor}


# orders


async def create_order(call: Call) -> dict[str, Any]:
    faults = call.venue.faults
    if faults.config.order_latency_ms:
        await asyncio.sleep(faults.config.order_latency_ms / 1000)
    answer, _ = call.venue.create_order(call.account, call.params)
    if faults.roll(faults.config.timeout_after_accept):
        await asyncio.sleep(faults.config.hang_ms / 1000)
        if call.request.transport is not None:
            call.request.transport.close()
        raise asyncio.CancelledError
    return answer


async def cancel_order(call: Call) -> dict[str, Any]:
    return call.venue.cancel_order(call.account, call.params)


async def cancel_all(call: Call) -> dict[str, Any]:
    category = call.category()
    if category == LINEAR and not (call.get("symbol") or call.get("baseCoin") or call.get("settleCoin")):
        raise BybitError(PARAM_ERROR, "symbol or baseCoin or settleCoin is required")
    return {"list": call.venue.cancel_all(call.account, call.params), "success": "1"}


def _matching_orders(call: Call, category: str) -> list[tuple[OrderState, OrderMeta]]:
    symbol = call.get("symbol")
    instrument = call.venue.market(category, symbol) if symbol else None
    order_id, link = call.get("orderId"), call.get("orderLinkId")
    found = []
    for state, meta in call.venue.orders(call.account, category):
        market = call.venue.engine.instruments[state.symbol]
        if order_id or link:
            if state.exchange_order_id == order_id if order_id else meta.order_link_id == link:
                found.append((state, meta))
            continue
        if instrument is not None and state.symbol != instrument.symbol:
            continue
        if call.get("baseCoin") and market.base != call.get("baseCoin"):
            continue
        if call.get("settleCoin") and market.settle != call.get("settleCoin"):
            continue
        found.append((state, meta))
    return found


async def open_orders(call: Call) -> dict[str, Any]:
    category = call.category()
    by_id = bool(call.get("orderId") or call.get("orderLinkId"))
    if category == LINEAR and not by_id and not (call.get("symbol") or call.get("baseCoin")
                                                 or call.get("settleCoin")):
        raise BybitError(PARAM_ERROR, "symbol or settleCoin or baseCoin is required")
    open_only = call.get("openOnly", "0") == "0" and not by_id
    orders = _matching_orders(call, category)
    recent_closed = {s.exchange_order_id for s, _ in orders if s.status.is_final}
    if open_only:
        recent_closed = set()
    elif len(recent_closed) > RECENT_CLOSED_ORDERS:
        final = [s.exchange_order_id for s, _ in orders if s.status.is_final]
        recent_closed = set(final[:RECENT_CLOSED_ORDERS])
    orders = [(s, m) for s, m in orders if not s.status.is_final or s.exchange_order_id in recent_closed]
    rows = [call.venue.order_item(s, stream=False) for s, _ in orders]
    items, cursor = call.page(rows, 20, 50)
    return {"category": category, "list": items, "nextPageCursor": cursor}


async def order_history(call: Call) -> dict[str, Any]:
    category = call.category()
    start, end = call.week()
    status = call.get("orderStatus")
    rows = []
    for state, meta in _matching_orders(call, category):
        item = call.venue.order_item(state, stream=False)
        by_id = call.get("orderId") or call.get("orderLinkId")
        if status and item["orderStatus"] != status:
            continue
        if not by_id and not start <= meta.created_ms <= end:
            continue
        rows.append(item)
    items, cursor = call.page(rows, 20, 50)
    return {"category": category, "list": items, "nextPageCursor": cursor}


async def executions(call: Call) -> dict[str, Any]:
    category = call.category()
    order_id, link = call.get("orderId"), call.get("orderLinkId")
    start, end = call.week()
    symbol = call.get("symbol")
    if symbol:
        call.venue.market(category, symbol)
    rows = []
    for e in call.venue.executions(call.account):
        if e.category != category:
            continue
        if order_id or link:
            if (e.order_id != order_id) if order_id else (e.order_link_id != link):
                continue
        elif (symbol and e.symbol != symbol) or not start <= e.exec_ms <= end:
            continue
        if call.get("execType") and e.exec_type != call.get("execType"):
            continue
        if call.get("baseCoin") and not e.symbol.startswith(call.get("baseCoin")):
            continue
        rows.append(serializers.execution(e, stream=False))
    items, cursor = call.page(rows, 50, 100)
    return {"category": category, "list": items, "nextPageCursor": cursor}


async def transaction_log(call: Call) -> dict[str, Any]:
    if call.get("accountType", "UNIFIED") != "UNIFIED":
        raise BybitError(PARAM_ERROR, "accountType only support UNIFIED.")
    start, end = call.week()
    rows = []
    for entry in call.venue.ledger(call.account):
        if not start <= entry.time_ms <= end:
            continue
        if call.get("category") and entry.category != call.get("category"):
            continue
        if call.get("currency") and entry.currency != call.get("currency"):
            continue
        if call.get("type") and entry.entry_type != call.get("type"):
            continue
        if call.get("baseCoin") and not entry.symbol.startswith(call.get("baseCoin")):
            continue
        rows.append({
            "id": entry.entry_id,
            "symbol": entry.symbol,
            "category": entry.category,
            "side": entry.side,
            "transactionTime": str(entry.time_ms),
            "type": entry.entry_type,
            "transSubType": "",
            "qty": fmt(entry.qty),
            "size": fmt(entry.size),
            "currency": entry.currency,
            "tradePrice": fmt(entry.trade_price),
            "funding": fmt(entry.funding),
            "fee": fmt(entry.fee),
            "cashFlow": fmt(entry.cash_flow),
            "change": fmt(entry.change),
            "cashBalance": fmt(entry.cash_balance),
            "feeRate": fmt(entry.fee_rate),
            "bonusChange": "",
            "tradeId": entry.trade_id,
            "orderId": entry.order_id,
            "orderLinkId": entry.order_link_id,
            "extraFees": "",
        })
    items, cursor = call.page(rows, 20, 50)
    return {"list": items, "nextPageCursor": cursor}


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/v5/market/time"): Route(server_time, private=False),
    ("GET", "/v5/market/instruments-info"): Route(instruments_info, private=False),
    ("GET", "/v5/market/tickers"): Route(tickers, private=False),
    ("GET", "/v5/market/orderbook"): Route(orderbook, private=False),
    ("GET", "/v5/market/funding/history"): Route(funding_history, private=False),
    ("GET", "/v5/market/risk-limit"): Route(risk_limit, private=False),
    ("GET", "/v5/asset/coin/query-info"): Route(coin_info, private=True, per_sec=5),
    ("GET", "/v5/user/query-api"): Route(api_key_info, private=True, per_sec=10),
    ("GET", "/v5/account/info"): Route(account_info, private=True, per_sec=50),
    ("GET", "/v5/account/wallet-balance"): Route(wallet_balance, private=True, per_sec=50),
    ("GET", "/v5/account/fee-rate"): Route(fee_rate, private=True, per_sec=10),
    ("GET", "/v5/account/transaction-log"): Route(transaction_log, private=True, per_sec=30),
    ("GET", "/v5/position/list"): Route(position_list, private=True, per_sec=50),
    ("POST", "/v5/order/create"): Route(create_order, private=True, per_sec=10),
    ("POST", "/v5/order/cancel"): Route(cancel_order, private=True, per_sec=10),
    ("POST", "/v5/order/cancel-all"): Route(cancel_all, private=True, per_sec=10),
    ("GET", "/v5/order/realtime"): Route(open_orders, private=True, per_sec=50),
    ("GET", "/v5/order/history"): Route(order_history, private=True, per_sec=50),
    ("GET", "/v5/execution/list"): Route(executions, private=True, per_sec=50),
}


def _json(body: dict[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                        headers=headers)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Answer one Bybit REST request: injected faults first, then the route, parameters,
    authentication and handler; every answer in Bybit's envelope."""
    venue = request.app[VENUE]
    faults = venue.faults
    # The request has arrived whole before any latency: it is handled even if its client goes meanwhile.
    body = await request.text() if request.method == "POST" else ""
    if faults.config.latency_ms:
        await asyncio.sleep(faults.config.latency_ms / 1000)
    venue.rest_arrivals.append(time.monotonic())
    if faults.roll(faults.config.ip_rate_limit):
        return web.Response(text="403 Forbidden: access too frequent", status=403,
                            headers=_retry_after(faults.config.retry_after_ms))
    if faults.roll(faults.config.http_rate_limit):
        return web.Response(text="429 Too Many Requests", status=429,
                            headers=_retry_after(faults.config.retry_after_ms))
    if faults.roll(faults.config.server_error):
        return web.Response(text="503 Service Temporarily Unavailable", status=503)
    if faults.roll(faults.config.rate_limit):
        reset_ms = faults.config.retry_after_ms
        reset = {"X-Bapi-Limit-Reset-Timestamp": str(wall_ms() + reset_ms)} if reset_ms else None
        return _json(envelope({}, wall_ms(), RATE_LIMITED, "Too many visits. Exceeded the API Rate Limit."),
                     headers=reset)
    limit_headers: dict[str, str] = {}
    try:
        route = ROUTES.get((request.method, request.path))
        if route is None:
            raise BybitError(ROUTE_NOT_FOUND, "Route not found.", http_status=404)
        raw = body if request.method == "POST" else request.rel_url.raw_query_string
        params: Any = dict(request.query)
        if request.method == "POST":
            try:
                params = json.loads(raw or "{}")
            except ValueError:
                raise BybitError(PARAM_ERROR, "request body is not valid JSON") from None
            if not isinstance(params, dict):
                raise BybitError(PARAM_ERROR, "request body must be a JSON object")
        account = ""
        if route.private:
            account = check_rest(venue.credentials, request.headers, raw, wall_ms())
            limit_headers = _count_call(venue, account, request.path, route.per_sec)
        result = await route.handler(Call(venue, account, params, request))
    except BybitError as error:
        return _json(envelope({}, wall_ms(), error.ret_code, error.ret_msg), error.http_status,
                     error.headers or limit_headers)
    except Exception:
        logger.exception("bybit_emulator_request_failed", extra={"path": request.path})
        return _json(envelope({}, wall_ms(), SERVER_ERROR, "Internal System Error."))
    answer = envelope(result, wall_ms())
    fault = _MALFORMED_ACCOUNT.get(request.path)
    if fault is not None and faults.roll(getattr(faults.config, fault[0])):
        fault[1](answer, faults.turn(fault[0], 3))
    return _json(answer, headers=limit_headers)


def _count_call(venue: BybitVenue, account: str, path: str, per_sec: int) -> dict[str, str]:
    """Count a request against the key's limit on `path` (a rolling second, as Bybit counts): the
    `X-Bapi-Limit*` headers of its answer. Over the limit, the request is refused with retCode 10006 and
    `X-Bapi-Limit-Reset-Timestamp` says when the oldest request leaves the window; otherwise that header is
    the current time, as Bybit sends it."""
    now_ms = wall_ms()
    calls = venue.api_calls[(account, path)]
    while calls and calls[0] <= now_ms - LIMIT_WINDOW_MS:
        calls.popleft()
    if len(calls) >= per_sec:
        raise BybitError(RATE_LIMITED, "Too many visits!", headers={
            "X-Bapi-Limit": str(per_sec), "X-Bapi-Limit-Status": "0",
            "X-Bapi-Limit-Reset-Timestamp": str(calls[0] + LIMIT_WINDOW_MS)})
    calls.append(now_ms)
    return {"X-Bapi-Limit": str(per_sec), "X-Bapi-Limit-Status": str(per_sec - len(calls)),
            "X-Bapi-Limit-Reset-Timestamp": str(now_ms)}


def _retry_after(retry_after_ms: int) -> dict[str, str]:
    return {"Retry-After": str(-(-retry_after_ms // 1000))} if retry_after_ms else {}


def _malformed_wallet(answer: dict[str, Any], kind: int) -> None:
    """Bybit's envelope with retCode 0, malformed: no result, a non-list list, or a bare coin entry."""
    if kind == 0:
        del answer["result"]
    elif kind == 1:
        answer["result"]["list"] = {"coin": "USDT"}
    else:
        for account in answer["result"]["list"]:
            account["coin"] = [{"usdValue": coin.get("usdValue")} for coin in account["coin"]] or [{}]


def _malformed_positions(answer: dict[str, Any], kind: int) -> None:
    """Bybit's envelope with retCode 0, malformed: no result, a non-list list, or a position without its
    size and side."""
    if kind == 0:
        del answer["result"]
    elif kind == 1:
        answer["result"]["list"] = "none"
    else:
        answer["result"]["list"] = [{key: value for key, value in item.items() if key not in ("size", "side")}
                                    for item in answer["result"]["list"]]


_MALFORMED_ACCOUNT: dict[str, tuple[str, Callable[[dict[str, Any], int], None]]] = {
    "/v5/account/wallet-balance": ("malformed_wallet", _malformed_wallet),
    "/v5/position/list": ("malformed_positions", _malformed_positions),
}
