"""Bybit v5 REST trading endpoints: create and cancel orders, open orders, order history and
executions."""

from __future__ import annotations

import asyncio
from typing import Any

from deltakeeper.domain.orders import OrderState
from deltakeeper.sim.bybit import serializers
from deltakeeper.sim.bybit.protocol import LINEAR, PARAM_ERROR, BybitError
from deltakeeper.sim.bybit.records import OrderMeta
from deltakeeper.sim.bybit.rest_call import Call
from deltakeeper.sim.bybit.venue import RECENT_CLOSED_ORDERS


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
