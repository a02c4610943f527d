"""Binance USD-M's JSON shapes of the emulator's records: orders, trades, income, positions, the account,
markets and prices, and the user-data stream's events (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.margin_tiers import MarginTier, cumulative_amounts_usd
from deltakeeper.domain.orders import Fill, Quote
from deltakeeper.sim.binance.protocol import fmt
from deltakeeper.sim.binance.records import Income, OrderRecord, UserTrade

MAX_LEVERAGE = 20


def order(record: OrderRecord) -> dict[str, Any]:
    """An order as /fapi/v1/order answers it."""
    return {
        "orderId": record.order_id, "symbol": record.symbol, "status": record.status,
        "clientOrderId": record.client_order_id, "price": fmt(record.price),
        "avgPrice": fmt(record.avg_price),
        "origQty": fmt(record.orig_qty), "executedQty": fmt(record.executed_qty),
        "cumQty": fmt(record.executed_qty), "cumQuote": fmt(record.cum_quote),
        "timeInForce": record.time_in_force, "type": record.order_type, "reduceOnly": record.reduce_only,
        "closePosition": False, "side": record.side, "positionSide": "BOTH", "stopPrice": "0",
        "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": record.order_type,
        "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
        "time": record.created_ms, "updateTime": record.update_ms,
    }


def order_update(record: OrderRecord, execution: str, event_ms: int, fill: Fill | None = None,
                 trade_id: int = 0, realized: Decimal = ZERO) -> dict[str, Any]:
    """An ORDER_TRADE_UPDATE event of the user-data stream."""
    return {
        "e": "ORDER_TRADE_UPDATE", "E": event_ms, "T": event_ms,
        "o": {
            "s": record.symbol, "c": record.client_order_id, "S": record.side, "o": record.order_type,
            "f": record.time_in_force, "q": fmt(record.orig_qty), "p": fmt(record.price),
            "ap": fmt(record.avg_price), "sp": "0", "x": execution, "X": record.status, "i": record.order_id,
            "l": fmt(fill.amount_contracts if fill else ZERO), "z": fmt(record.executed_qty),
            "L": fmt(fill.price if fill else ZERO), "N": fill.fee_currency if fill else "USDT",
            "n": fmt(fill.fee if fill else ZERO), "T": event_ms, "t": trade_id, "b": "0", "a": "0",
            "m": bool(fill and fill.is_maker), "R": record.reduce_only, "wt": "CONTRACT_PRICE",
            "ot": record.order_type, "ps": "BOTH", "cp": False, "rp": fmt(realized), "pP": False,
            "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0,
        },
    }


def trade(row: UserTrade) -> dict[str, Any]:
    return {
        "buyer": row.side == "BUY", "commission": fmt(row.commission),
        "commissionAsset": row.commission_asset,
        "id": row.trade_id, "maker": row.maker, "orderId": row.order_id, "price": fmt(row.price),
        "qty": fmt(row.qty), "quoteQty": fmt(row.quote_qty), "realizedPnl": fmt(row.realized_pnl),
        "side": row.side, "positionSide": "BOTH", "symbol": row.symbol, "time": row.time_ms,
    }


def income(row: Income) -> dict[str, Any]:
    return {
        "symbol": row.symbol, "incomeType": row.income_type, "income": fmt(row.income), "asset": row.asset,
        "info": row.income_type, "time": row.time_ms, "tranId": row.tran_id, "tradeId": row.trade_id,
    }


def position_risk(symbol: str, held: Position | None, mark: Decimal, leverage: Decimal,
                  update_ms: int) -> dict[str, Any]:
    """A /fapi/v2 and v3 positionRisk entry (one-way mode, cross margin)."""
    contracts = held.contracts if held else ZERO
    notional = contracts * mark
    return {
        "symbol": symbol, "positionSide": "BOTH", "positionAmt": fmt(contracts),
        "entryPrice": fmt(held.entry_price if held else ZERO),
        "breakEvenPrice": fmt(held.entry_price if held else ZERO), "markPrice": fmt(mark),
        "unRealizedProfit": fmt(held.unrealized_pnl if held and held.unrealized_pnl is not None else ZERO),
        "liquidationPrice": fmt(held.liquidation_price if held and held.liquidation_price else ZERO),
        "isolatedMargin": "0", "notional": fmt(notional), "marginAsset": "USDT", "isolatedWallet": "0",
        "initialMargin": fmt(held.initial_margin if held and held.initial_margin else ZERO),
        "maintMargin": fmt(held.maintenance_margin if held and held.maintenance_margin else ZERO),
        "positionInitialMargin": fmt(held.initial_margin if held and held.initial_margin else ZERO),
        "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
        "marginType": "cross", "isAutoAddMargin": "false", "leverage": fmt(leverage),
        "maxNotionalValue": "100000000", "updateTime": update_ms if contracts else 0,
    }


def asset(coin: str, wallet: Decimal, upnl: Decimal, margin: Decimal, maintenance: Decimal,
          update_ms: int) -> dict[str, Any]:
    """An entry of the account's `assets`."""
    available = wallet + upnl - margin
    return {
        "asset": coin, "walletBalance": fmt(wallet), "unrealizedProfit": fmt(upnl),
        "marginBalance": fmt(wallet + upnl), "maintMargin": fmt(maintenance), "initialMargin": fmt(margin),
        "positionInitialMargin": fmt(margin), "openOrderInitialMargin": "0",
        "crossWalletBalance": fmt(wallet), "crossUnPnl": fmt(upnl), "availableBalance": fmt(available),
        "maxWithdrawAmount": fmt(max(ZERO, available)), "marginAvailable": True, "updateTime": update_ms,
    }


def account_update(event_ms: int, reason: str, balances: Mapping[str, Decimal],
                   positions: Sequence[tuple[str, Position | None]]) -> dict[str, Any]:
    """An ACCOUNT_UPDATE event: every wallet balance, and the positions that changed."""
    return {
        "e": "ACCOUNT_UPDATE", "E": event_ms, "T": event_ms,
        "a": {
            "m": reason,
            "B": [{"a": coin, "wb": fmt(amount), "cw": fmt(amount), "bc": "0"}
                  for coin, amount in sorted(balances.items())],
            "P": [{"s": symbol, "pa": fmt(held.contracts if held else ZERO),
                   "ep": fmt(held.entry_price if held else ZERO),
                   "bep": fmt(held.entry_price if held else ZERO),
                   "cr": "0", "up": fmt(held.unrealized_pnl if held and held.unrealized_pnl else ZERO),
                   "mt": "cross", "iw": "0", "ps": "BOTH"} for symbol, held in positions],
        },
    }


def exchange_symbol(symbol: str, instrument: Instrument, tick: Decimal, launch_ms: int) -> dict[str, Any]:
    """A market of /fapi/v1/exchangeInfo."""
    step = instrument.lot_step_contracts
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": launch_ms, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": instrument.base, "quoteAsset": instrument.quote,
        "marginAsset": instrument.settle, "pricePrecision": _decimals(tick),
        "quantityPrecision": _decimals(step), "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
        "triggerProtect": "0.0500", "liquidationFee": "0.015000", "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(tick), "maxPrice": "1000000",
             "tickSize": fmt(tick)},
            {"filterType": "LOT_SIZE", "stepSize": fmt(step), "minQty": fmt(instrument.min_contracts),
             "maxQty": "1000000"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": fmt(step), "minQty": fmt(instrument.min_contracts),
             "maxQty": "100000"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": fmt(instrument.min_notional_usd)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "GTX"],
    }


def premium_index(symbol: str, quote: Quote, funding: tuple[Decimal, int] | None, now_ms: int
                  ) -> dict[str, Any]:
    rate, next_ms = funding if funding else (ZERO, 0)
    return {
        "symbol": symbol, "markPrice": fmt(quote.mark), "indexPrice": fmt(quote.index or quote.mark),
        "estimatedSettlePrice": fmt(quote.index or quote.mark), "lastFundingRate": fmt(rate),
        "interestRate": "0.0001", "nextFundingTime": next_ms, "time": now_ms,
    }


def mark_price_event(symbol: str, quote: Quote, funding: tuple[Decimal, int] | None, event_ms: int
                     ) -> dict[str, Any]:
    """A `<symbol>@markPrice@1s` push."""
    rate, next_ms = funding if funding else (ZERO, 0)
    return {"e": "markPriceUpdate", "E": event_ms, "s": symbol, "p": fmt(quote.mark),
            "i": fmt(quote.index or quote.mark), "P": fmt(quote.index or quote.mark), "r": fmt(rate),
            "T": next_ms}


def book_ticker(symbol: str, bid: tuple[Decimal, Decimal], ask: tuple[Decimal, Decimal], update_id: int,
                event_ms: int, *, stream: bool) -> dict[str, Any]:
    """`/fapi/v1/ticker/bookTicker` (REST) or a `<symbol>@bookTicker` push (stream)."""
    if stream:
        return {"e": "bookTicker", "u": update_id, "E": event_ms, "T": event_ms, "s": symbol,
                "b": fmt(bid[0]), "B": fmt(bid[1]), "a": fmt(ask[0]), "A": fmt(ask[1])}
    return {"symbol": symbol, "bidPrice": fmt(bid[0]), "bidQty": fmt(bid[1]), "askPrice": fmt(ask[0]),
            "askQty": fmt(ask[1]), "time": event_ms, "lastUpdateId": update_id}


def leverage_brackets(symbol: str, tiers: Sequence[MarginTier]) -> dict[str, Any]:
    """A symbol's brackets of /fapi/v1/leverageBracket: the engine's maintenance margin table."""
    cums = cumulative_amounts_usd(tiers)
    return {"symbol": symbol, "notionalCoef": 1.0, "brackets": [
        {"bracket": index + 1,
         "initialLeverage": max(1, int(1 / (2 * tier.mmr))) if tier.mmr else MAX_LEVERAGE,
         "notionalCap": float(tier.cap_usd), "notionalFloor": float(tier.floor_usd),
         "maintMarginRatio": float(tier.mmr), "cum": float(cum)}
        for index, (tier, cum) in enumerate(zip(tiers, cums, strict=True))]}


def _decimals(step: Decimal) -> int:
    """How many decimals a price or quantity step has (0.01: 2)."""
    return max(0, -step.normalize().adjusted())
