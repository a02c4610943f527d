"""Bybit v5 REST account endpoints: coins, the API key, account settings, wallet, fee rates, positions
and the transaction log."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from deltakeeper.sim.bybit.protocol import INVERSE, LINEAR, OPTION, PARAM_ERROR, BybitError, fmt
from deltakeeper.sim.bybit.rest_call import Call, base_coin_matches
from deltakeeper.sim.bybit.venue import BybitVenue, user_id


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
        and base_coin_matches(call, category, instrument)
    ]
    items, cursor = call.page(rows, 20, 200)
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
