"""Bybit v5 REST: one routing table, one dispatcher (faults, parameters, authentication, envelope).

Page sizes, defaults and time windows follow https://bybit-exchange.github.io/docs/v5/ for each path."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from deltakeeper.sim.bybit.auth import check_rest
from deltakeeper.sim.bybit.protocol import (
    PARAM_ERROR,
    RATE_LIMITED,
    ROUTE_NOT_FOUND,
    SERVER_ERROR,
    BybitError,
    envelope,
)
from deltakeeper.sim.bybit.rest_account import (
    account_info,
    api_key_info,
    coin_info,
    fee_rate,
    position_list,
    transaction_log,
    wallet_balance,
)
from deltakeeper.sim.bybit.rest_call import Call, Route, wall_ms
from deltakeeper.sim.bybit.rest_market import (
    funding_history,
    instruments_info,
    orderbook,
    risk_limit,
    server_time,
    tickers,
)
from deltakeeper.sim.bybit.rest_trading import (
    cancel_all,
    cancel_order,
    create_order,
    executions,
    open_orders,
    order_history,
)
from deltakeeper.sim.bybit.venue import BybitVenue

logger = logging.getLogger(__name__)
VENUE = web.AppKey("venue", BybitVenue)
LIMIT_WINDOW_MS = 1000


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
