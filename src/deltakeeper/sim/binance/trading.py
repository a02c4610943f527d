"""Binance USD-M's signed account and trading endpoints, and the user-data stream's listen key."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from deltakeeper.domain.instruments import ZERO
from deltakeeper.sim.binance import serializers
from deltakeeper.sim.binance.call import WEEK_MS, Call
from deltakeeper.sim.binance.protocol import MANDATORY_PARAM, BinanceError, fmt

T = TypeVar("T")


async def account(call: Call) -> dict[str, Any]:
    """/fapi/v2 and v3 account: each asset's wallet with the PnL and margins of the positions it settles,
    and the USDT totals (single-asset mode)."""
    venue = call.venue
    upnl: dict[str, Decimal] = defaultdict(Decimal)
    initial: dict[str, Decimal] = defaultdict(Decimal)
    maintenance: dict[str, Decimal] = defaultdict(Decimal)
    for symbol, held in venue.positions(call.account).items():
        settle = venue.markets[symbol].settle
        upnl[settle] += held.unrealized_pnl or ZERO
        initial[settle] += held.initial_margin or ZERO
        maintenance[settle] += held.maintenance_margin or ZERO
    now_ms = venue.now_ms()
    wallets = venue.engine.balances(call.account)
    assets = [serializers.asset(coin, amount, upnl[coin], initial[coin], maintenance[coin], now_ms)
              for coin, amount in sorted(wallets.items())]
    wallet, pnl = wallets.get("USDT", ZERO), upnl["USDT"]
    return {
        "totalInitialMargin": fmt(initial["USDT"]), "totalMaintMargin": fmt(maintenance["USDT"]),
        "totalWalletBalance": fmt(wallet), "totalUnrealizedProfit": fmt(pnl),
        "totalMarginBalance": fmt(wallet + pnl), "totalPositionInitialMargin": fmt(initial["USDT"]),
        "totalOpenOrderInitialMargin": "0", "totalCrossWalletBalance": fmt(wallet),
        "totalCrossUnPnl": fmt(pnl), "availableBalance": fmt(wallet + pnl - initial["USDT"]),
        "maxWithdrawAmount": fmt(max(ZERO, wallet + pnl - initial["USDT"])),
        "assets": assets,
        "positions": [{k: v for k, v in item.items() if k in _ACCOUNT_POSITION_KEYS}
                      for item in _position_items(call, open_only=True)],
    }


_ACCOUNT_POSITION_KEYS = ("symbol", "positionSide", "positionAmt", "unrealizedProfit", "isolatedMargin",
                          "notional", "isolatedWallet", "initialMargin", "maintMargin", "updateTime")


async def balance(call: Call) -> list[dict[str, Any]]:
    return [{"accountAlias": "SgsR", "asset": a["asset"], "balance": a["walletBalance"],
             "crossWalletBalance": a["crossWalletBalance"], "crossUnPnl": a["crossUnPnl"],
             "availableBalance": a["availableBalance"], "maxWithdrawAmount": a["maxWithdrawAmount"],
             "marginAvailable": True, "updateTime": a["updateTime"]} for a in (await account(call))["assets"]]


def _position_items(call: Call, *, open_only: bool) -> list[dict[str, Any]]:
    venue = call.venue
    held = venue.positions(call.account)
    wanted = call.get("symbol")
    if wanted:
        venue.market(wanted)
    items = []
    for symbol, instrument in sorted(venue.markets.items()):
        position = held.get(symbol)
        if (wanted and symbol != wanted) or (open_only and position is None):
            continue
        items.append(serializers.position_risk(symbol, position, venue.mark(instrument),
                                               venue.engine.leverage, venue.now_ms()))
    for item in items:
        item["unrealizedProfit"] = item["unRealizedProfit"]
    return items


async def position_risk_v2(call: Call) -> list[dict[str, Any]]:
    return _position_items(call, open_only=False)


async def position_risk_v3(call: Call) -> list[dict[str, Any]]:
    return _position_items(call, open_only=True)


async def leverage_bracket(call: Call) -> Any:
    tiers = call.venue.engine.maintenance_tiers
    if call.get("symbol"):
        call.venue.market(call.get("symbol"))
        return [serializers.leverage_brackets(call.get("symbol"), tiers)]
    return [serializers.leverage_brackets(symbol, tiers) for symbol in sorted(call.venue.markets)]


# orders


async def create_order(call: Call) -> dict[str, Any]:
    faults = call.venue.faults
    if faults.config.order_latency_ms:
        await asyncio.sleep(faults.config.order_latency_ms / 1000)
    record = call.venue.create_order(call.account, call.params)
    if faults.roll(faults.config.timeout_after_accept):
        await asyncio.sleep(faults.config.hang_ms / 1000)
        if call.request.transport is not None:
            call.request.transport.close()
        raise asyncio.CancelledError
    return serializers.order(record)


async def get_order(call: Call) -> dict[str, Any]:
    return serializers.order(call.venue.find_order(call.account, call.params))


async def cancel_order(call: Call) -> dict[str, Any]:
    return serializers.order(call.venue.cancel_order(call.account, call.params))


async def cancel_all(call: Call) -> dict[str, Any]:
    if not call.get("symbol"):
        raise BinanceError(MANDATORY_PARAM, "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                           "malformed.")
    call.venue.cancel_all(call.account, call.get("symbol"))
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


async def open_orders(call: Call) -> list[dict[str, Any]]:
    symbol = call.get("symbol") or None
    if symbol:
        call.venue.market(symbol)
    return [serializers.order(r) for r in call.venue.orders(call.account, symbol) if r.is_open]


async def all_orders(call: Call) -> list[dict[str, Any]]:
    symbol = _required_symbol(call)
    start, end = call.window(WEEK_MS)
    from_id = call.ms("orderId")
    rows = [r for r in call.venue.orders(call.account, symbol)
            if (r.order_id >= from_id if from_id is not None else start <= r.created_ms <= end)]
    return [serializers.order(r) for r in _oldest(rows, call.limit(500, 1000), lambda r: r.created_ms)]


async def user_trades(call: Call) -> list[dict[str, Any]]:
    symbol = _required_symbol(call)
    start, end = call.window(WEEK_MS)
    order_id, from_id = call.ms("orderId"), call.ms("fromId")
    rows = [t for t in call.venue.trades(call.account) if t.symbol == symbol
            and (order_id is None or t.order_id == order_id)
            and (t.trade_id >= from_id if from_id is not None else start <= t.time_ms <= end)]
    return [serializers.trade(t) for t in _oldest(rows, call.limit(500, 1000), lambda t: t.time_ms)]


async def income(call: Call) -> list[dict[str, Any]]:
    symbol, kind = call.get("symbol"), call.get("incomeType")
    if symbol:
        call.venue.market(symbol)
    start, end = call.window(WEEK_MS)
    rows = [i for i in call.venue.income(call.account) if (not symbol or i.symbol == symbol)
            and (not kind or i.income_type == kind) and start <= i.time_ms <= end]
    return [serializers.income(i) for i in _oldest(rows, call.limit(100, 1000), lambda i: i.time_ms)]


def _required_symbol(call: Call) -> str:
    if not call.get("symbol"):
        raise BinanceError(MANDATORY_PARAM, "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                           "malformed.")
    call.venue.market(call.get("symbol"))
    return call.get("symbol")


def _oldest(rows: Sequence[T], limit: int, ms: Callable[[T], int]) -> list[T]:
    """The first `limit` rows by time: Binance answers a window from its start."""
    return sorted(rows, key=ms)[:limit]


# user data stream


async def new_listen_key(call: Call) -> dict[str, Any]:
    return {"listenKey": call.venue.listen_key(call.account)}


async def keep_alive_listen_key(call: Call) -> dict[str, Any]:
    return {"listenKey": call.venue.keep_alive(call.account)}


async def close_listen_key(call: Call) -> dict[str, Any]:
    call.venue.close_listen_key(call.account)
    return {}


# the spot wallet's (/sapi) answers ccxt reads with the markets


async def coins(call: Call) -> list[dict[str, Any]]:
    """/sapi/v1/capital/config/getall, which ccxt reads for the currencies when it has a key: the coins of
    the markets, no network (the emulator has no deposits or withdrawals)."""
    held = call.venue.engine.balances(call.account)
    names = sorted({coin for i in call.venue.markets.values() for coin in (i.base, i.quote, i.settle)})
    return [{"coin": coin, "name": coin, "depositAllEnable": False, "withdrawAllEnable": False,
             "free": fmt(held.get(coin, ZERO)), "locked": "0", "freeze": "0", "withdrawing": "0",
             "ipoing": "0", "ipoable": "0", "storage": "0", "isLegalMoney": False, "trading": True,
             "networkList": []} for coin in names]


async def margin_pairs(call: Call) -> list[dict[str, Any]]:
    """/sapi/v1/margin/allPairs, which ccxt reads with the currencies: none (no spot margin here)."""
    return []
