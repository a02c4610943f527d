"""Binance USD-M REST (/fapi): one routing table, one dispatcher (faults, parameters, authentication,
Binance's error answers). Limits, defaults and time windows follow
https://developers.binance.com/docs/derivatives/usds-margined-futures for each path."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from deltakeeper.sim.binance import market_data as market
from deltakeeper.sim.binance import trading
from deltakeeper.sim.binance.auth import api_key_account, check_signed
from deltakeeper.sim.binance.call import Call, Handler, wall_ms
from deltakeeper.sim.binance.protocol import NOT_FOUND_STATUS, TOO_MANY_REQUESTS, UNKNOWN, BinanceError
from deltakeeper.sim.binance.venue import BinanceVenue

logger = logging.getLogger(__name__)
VENUE = web.AppKey("binance_venue", BinanceVenue)


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    security: str = "NONE"
    """NONE (public), SIGNED (key, timestamp and signature) or USER_STREAM (key alone)."""


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/fapi/v1/ping"): Route(market.ping),
    ("GET", "/fapi/v1/time"): Route(market.server_time),
    ("GET", "/fapi/v1/exchangeInfo"): Route(market.exchange_info),
    ("GET", "/fapi/v1/depth"): Route(market.depth),
    ("GET", "/fapi/v1/ticker/bookTicker"): Route(market.book_ticker),
    ("GET", "/fapi/v1/ticker/24hr"): Route(market.ticker_24hr),
    ("GET", "/fapi/v1/premiumIndex"): Route(market.premium_index),
    ("GET", "/fapi/v2/account"): Route(trading.account, "SIGNED"),
    ("GET", "/fapi/v3/account"): Route(trading.account, "SIGNED"),
    ("GET", "/fapi/v2/balance"): Route(trading.balance, "SIGNED"),
    ("GET", "/fapi/v3/balance"): Route(trading.balance, "SIGNED"),
    ("GET", "/fapi/v2/positionRisk"): Route(trading.position_risk_v2, "SIGNED"),
    ("GET", "/fapi/v3/positionRisk"): Route(trading.position_risk_v3, "SIGNED"),
    ("GET", "/fapi/v1/leverageBracket"): Route(trading.leverage_bracket, "SIGNED"),
    ("POST", "/fapi/v1/order"): Route(trading.create_order, "SIGNED"),
    ("GET", "/fapi/v1/order"): Route(trading.get_order, "SIGNED"),
    ("DELETE", "/fapi/v1/order"): Route(trading.cancel_order, "SIGNED"),
    ("DELETE", "/fapi/v1/allOpenOrders"): Route(trading.cancel_all, "SIGNED"),
    ("GET", "/fapi/v1/openOrders"): Route(trading.open_orders, "SIGNED"),
    ("GET", "/fapi/v1/allOrders"): Route(trading.all_orders, "SIGNED"),
    ("GET", "/fapi/v1/userTrades"): Route(trading.user_trades, "SIGNED"),
    ("GET", "/fapi/v1/income"): Route(trading.income, "SIGNED"),
    ("GET", "/sapi/v1/capital/config/getall"): Route(trading.coins, "SIGNED"),
    ("GET", "/sapi/v1/margin/allPairs"): Route(trading.margin_pairs, "SIGNED"),
    ("POST", "/fapi/v1/listenKey"): Route(trading.new_listen_key, "USER_STREAM"),
    ("PUT", "/fapi/v1/listenKey"): Route(trading.keep_alive_listen_key, "USER_STREAM"),
    ("DELETE", "/fapi/v1/listenKey"): Route(trading.close_listen_key, "USER_STREAM"),
}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                        headers=headers)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Answer one Binance REST request: injected faults first, then the route, parameters,
    authentication and handler; a refusal as Binance's {"code", "msg"} with its HTTP status."""
    venue = request.app[VENUE]
    faults = venue.faults
    body = await request.text() if request.method in ("POST", "PUT") else ""
    if faults.config.latency_ms:
        await asyncio.sleep(faults.config.latency_ms / 1000)
    retry_after = _retry_after(faults.config.retry_after_ms)
    if faults.roll(faults.config.ip_rate_limit):
        return _json({"code": TOO_MANY_REQUESTS, "msg": "Way too many requests; IP banned."}, 418,
                     retry_after)
    if faults.roll(faults.config.http_rate_limit) or faults.roll(faults.config.rate_limit):
        return _json({"code": TOO_MANY_REQUESTS, "msg": "Too many requests; current limit of IP is 2400 "
                      "requests per minute."}, 429, retry_after)
    if faults.roll(faults.config.server_error):
        return web.Response(text="503 Service Unavailable", status=503)
    try:
        route = ROUTES.get((request.method, request.path))
        if route is None:
            raise BinanceError(UNKNOWN, f"Path {request.path}, Method {request.method} is invalid",
                               status=NOT_FOUND_STATUS)
        query = request.rel_url.raw_query_string
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        account = ""
        if route.security == "SIGNED":
            account = check_signed(venue.credentials, request.headers, query, body, params, wall_ms())
        elif route.security == "USER_STREAM":
            account = api_key_account(venue.credentials, request.headers)
        result = await route.handler(Call(venue, account, params, request))
    except BinanceError as error:
        return _json(error.body(), error.status, error.headers)
    except Exception:
        logger.exception("binance_emulator_request_failed", extra={"path": request.path})
        return _json({"code": UNKNOWN, "msg": "An unknown error occured while processing the request."}, 500)
    return _json(result)


def _retry_after(retry_after_ms: int) -> dict[str, str]:
    return {"Retry-After": str(-(-retry_after_ms // 1000))} if retry_after_ms else {}
