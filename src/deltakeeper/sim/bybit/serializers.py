"""One serializer per Bybit v5 object: order, execution, position, wallet, ticker. Values are strings in
plain decimal notation; REST items and websocket items differ where Bybit's do (`stream=True`).

Field sets follow https://bybit-exchange.github.io/docs/v5/ (order/open-order, order/execution,
position, account/wallet-balance, market/tickers and the websocket private and public topics)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument, is_stable
from deltakeeper.domain.margin_tiers import MarginTier, cumulative_amounts_usd
from deltakeeper.domain.orders import OrderState, OrderStatus, OrderType, Quote
from deltakeeper.sim.bybit.protocol import INVERSE, SPOT, fmt
from deltakeeper.sim.bybit.records import DAY_MS, HOUR_MS, Execution, MarketStats, OrderMeta, PositionBook

RISK_TIERS: tuple[tuple[Decimal, Decimal, Decimal, Decimal], ...] = (
    (Decimal(2_000_000), Decimal("0.005"), Decimal("0.01"), Decimal(100)),
    (Decimal(4_000_000), Decimal("0.01"), Decimal("0.02"), Decimal(50)),
    (Decimal(8_000_000), Decimal("0.02"), Decimal("0.04"), Decimal(25)),
    (Decimal(16_000_000), Decimal("0.04"), Decimal("0.08"), Decimal("12.5")),
)
"""(risk limit value in USD, maintenance margin rate, initial margin rate, max leverage) per tier; inverse
markets state the limit in coin, as Bybit does, here at 1/10,000 of the USD figure."""
MAINTENANCE_TIERS_USD = tuple(
    MarginTier(floor, cap, mmr)
    for floor, (cap, mmr, _, _) in zip((ZERO, *(tier[0] for tier in RISK_TIERS[:-1])), RISK_TIERS,
                                       strict=True)
)
"""The risk tiers as the maintenance margin table (USD notional) the emulator's engine margins and
liquidates every futures market with: what the positions' `positionMM` and `liqPrice` follow."""
MM_DEDUCTIONS = tuple(cumulative_amounts_usd(MAINTENANCE_TIERS_USD))
"""Bybit's `mmDeduction` per tier: `MM = value x maintenance margin rate - mmDeduction`."""

TAKEOVER_CREATE_TYPE = "CreateByTakeOver_PassThrough"
"""The `createType` of the liquidation engine's order that takes a position over and closes it (Bybit's
enum page: "the position shall be taken over by the liquidation engine and closed")."""
_CREATE_TYPES = {"Trade": "CreateByUser", "BustTrade": TAKEOVER_CREATE_TYPE, "Delivery": "CreateBySettle",
                 "Settle": "CreateBySettle"}
"""An execution's `createType` by its `execType`; a funding fee's is empty."""

_STATUS = {
    OrderStatus.OPEN: "New",
    OrderStatus.PARTIALLY_FILLED: "PartiallyFilled",
    OrderStatus.FILLED: "Filled",
    OrderStatus.REJECTED: "Rejected",
}


def risk_limit_value(usd: Decimal, category: str) -> str:
    """An amount of the risk table as Bybit states it: in coin for inverse markets (see RISK_TIERS)."""
    return fmt(usd / 10_000 if category == INVERSE else usd)


def side_name(sign: int) -> str:
    return "Buy" if sign > 0 else "Sell"


def order_status(state: OrderState, category: str) -> str:
    if state.status is OrderStatus.CANCELED:
        partial = state.filled_contracts > 0
        return "PartiallyFilledCanceled" if partial and category == SPOT else "Cancelled"
    return _STATUS[state.status]


def settle_value(instrument: Instrument, contracts: Decimal, price: Decimal) -> Decimal:
    """Value in the settle coin (spot: the quote coin): linear and spot qty x price, inverse qty / price."""
    if instrument.inverse:
        return contracts * instrument.contract_size / price
    return contracts * instrument.contract_size * price


def order(state: OrderState, meta: OrderMeta, symbol: str, updated_ms: int, *,
          stream: bool) -> dict[str, Any]:
    spot = meta.category == SPOT
    filled = state.filled_contracts
    leaves = state.amount_contracts - filled if not state.status.is_final else ZERO
    if not filled:
        avg_price = None
    elif meta.category == INVERSE:
        avg_price = filled / meta.cum_exec_value
    else:
        avg_price = meta.cum_exec_value / filled
    leaves_value = ZERO
    if leaves and state.price:
        leaves_value = leaves / state.price if meta.category == INVERSE else leaves * state.price
    item: dict[str, Any] = {
        "orderId": state.exchange_order_id,
        "orderLinkId": meta.order_link_id,
        "blockTradeId": "",
        "symbol": symbol,
        "price": fmt(state.price) if state.price is not None else "0",
        "qty": fmt(meta.qty),
        "side": side_name(state.side.sign),
        "isLeverage": "0" if spot else "",
        "positionIdx": 0,
        "orderStatus": order_status(state, meta.category),
        "cancelType": meta.cancel_type,
        "rejectReason": meta.reject_reason,
        "avgPrice": fmt(avg_price),
        "leavesQty": fmt(leaves),
        "leavesValue": fmt(leaves_value),
        "cumExecQty": fmt(filled),
        "cumExecValue": fmt(meta.cum_exec_value),
        "cumExecFee": fmt(meta.cum_exec_fee),
        "timeInForce": meta.time_in_force,
        "orderType": "Limit" if state.order_type is OrderType.LIMIT else "Market",
        "stopOrderType": "",
        "orderIv": "",
        "marketUnit": meta.market_unit,
        "triggerPrice": "",
        "takeProfit": "",
        "stopLoss": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": fmt(meta.last_price_on_created),
        "reduceOnly": meta.reduce_only,
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "slippageToleranceType": "UNKNOWN",
        "slippageTolerance": "0",
        "cumFeeDetail": {meta.fee_currency: fmt(meta.cum_exec_fee)} if meta.fee_currency else {},
        "extraFees": "",
        "createdTime": str(meta.created_ms),
        "updatedTime": str(updated_ms),
    }
    if spot:
        item["ocoTriggerBy"] = "OcoTriggerByUnknown"
    else:
        item["tpslMode"] = ""
        item["createType"] = meta.create_type
    if stream:
        item["category"] = meta.category
        item["closedPnl"] = fmt(meta.closed_pnl)
        item["feeCurrency"] = meta.fee_currency if spot else ""
    return item


def execution(e: Execution, *, stream: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "symbol": e.symbol,
        "orderId": e.order_id,
        "orderLinkId": e.order_link_id,
        "side": e.side,
        "orderPrice": fmt(e.order_price) if e.order_price is not None else "0",
        "orderQty": fmt(e.order_qty),
        "leavesQty": fmt(e.leaves_qty),
        "orderType": e.order_type,
        "stopOrderType": "UNKNOWN",
        "execFee": fmt(e.exec_fee),
        "execId": e.exec_id,
        "execPrice": fmt(e.exec_price),
        "execQty": fmt(e.exec_qty),
        "execType": e.exec_type,
        "execValue": fmt(e.exec_value),
        "execTime": str(e.exec_ms),
        "feeCurrency": e.fee_currency,
        "isMaker": e.is_maker,
        "feeRate": fmt(e.fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": fmt(e.mark_price),
        "indexPrice": fmt(e.index_price),
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": fmt(e.closed_size),
        "seq": e.seq,
        "extraFees": "",
    }
    if e.category != SPOT:
        item["createType"] = _CREATE_TYPES.get(e.exec_type, "")
    if stream:
        item["category"] = e.category
        item["isLeverage"] = "0" if e.category == SPOT else ""
    else:
        item["execFeeV2"] = ""
    return item


def position(
    instrument: Instrument,
    category: str,
    symbol: str,
    held: Position | None,
    book: PositionBook,
    leverage: Decimal,
    *,
    stream: bool,
) -> dict[str, Any]:
    """`held` carries the engine's margin figures (`Position.initial_margin`, `maintenance_margin`,
    `leverage`, `liquidation_price`); `leverage` is the account's, for a flat position. `liqPrice` is empty
    where the engine finds no liquidation price, as Bybit leaves it empty outside its price band."""
    contracts = held.contracts if held else ZERO
    entry = held.entry_price if held and contracts else ZERO
    mark = held.mark_price if held else None
    value = settle_value(instrument, abs(contracts), entry) if contracts else ZERO
    initial = held.initial_margin if held and held.initial_margin is not None else ZERO
    maintenance = held.maintenance_margin if held and held.maintenance_margin is not None else ZERO
    liquidation = held.liquidation_price if held and contracts else None
    item: dict[str, Any] = {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": risk_limit_value(RISK_TIERS[0][0], category),
        "symbol": symbol,
        "side": side_name(1 if contracts > 0 else -1) if contracts else "",
        "size": fmt(abs(contracts)),
        "avgPrice" if not stream else "entryPrice": fmt(entry),
        "positionValue": fmt(value),
        "tradeMode": 0,
        "positionStatus": "Normal",
        "autoAddMargin": 0,
        "adlRankIndicator": 2 if contracts else 0,
        "leverage": fmt(held.leverage if held and held.leverage else leverage),
        "positionBalance": fmt(initial),
        "markPrice": fmt(mark),
        "liqPrice": fmt(liquidation) if liquidation is not None else "",
        "bustPrice": "",
        "positionMM": fmt(maintenance),
        "positionIM": fmt(initial),
        "tpslMode": "Full",
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "sessionAvgPrice": "",
        "unrealisedPnl": fmt(held.unrealized_pnl if held and held.unrealized_pnl is not None else ZERO),
        "curRealisedPnl": fmt(book.cur_realised),
        "cumRealisedPnl": fmt(book.cum_realised),
        "seq": book.seq,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "createdTime": str(book.created_ms),
        "updatedTime": str(book.updated_ms),
    }
    if stream:
        item["category"] = category
    return item


def wallet(
    balances: Mapping[str, Decimal],
    positions: Sequence[tuple[Instrument, Position]],
    locked: Mapping[str, Decimal],
    cum_realised: Mapping[str, Decimal],
    usd_price: Callable[[str], Decimal | None],
) -> dict[str, Any]:
    """The UNIFIED account: one entry per coin held or margining a position, and USD totals; the positions'
    margin is the engine's (`Position.initial_margin`, `maintenance_margin`)."""
    upnl: dict[str, Decimal] = {}
    initial: dict[str, Decimal] = {}
    maintenance: dict[str, Decimal] = {}
    for instrument, held in positions:
        settle = instrument.settle
        upnl[settle] = upnl.get(settle, ZERO) + (held.unrealized_pnl or ZERO)
        initial[settle] = initial.get(settle, ZERO) + (held.initial_margin or ZERO)
        maintenance[settle] = maintenance.get(settle, ZERO) + (held.maintenance_margin or ZERO)
    coins = []
    totals = dict.fromkeys(("equity", "wallet", "upl", "im", "mm", "available"), ZERO)
    for coin in sorted(set(balances) | set(upnl)):
        wallet_balance = balances.get(coin, ZERO)
        equity = wallet_balance + upnl.get(coin, ZERO)
        im = initial.get(coin, ZERO)
        mm = maintenance.get(coin, ZERO)
        held_back = locked.get(coin, ZERO)
        available = max(ZERO, wallet_balance - held_back - im)
        price = Decimal(1) if is_stable(coin) else usd_price(coin)
        usd = equity * price if price is not None else ZERO
        if price is not None:
            totals["equity"] += usd
            totals["wallet"] += wallet_balance * price
            totals["upl"] += upnl.get(coin, ZERO) * price
            totals["im"] += im * price
            totals["mm"] += mm * price
            totals["available"] += available * price
        coins.append({
            "coin": coin,
            "equity": fmt(equity),
            "usdValue": fmt(usd),
            "walletBalance": fmt(wallet_balance),
            "locked": fmt(held_back),
            "spotHedgingQty": "0",
            "borrowAmount": "0",
            "availableToWithdraw": "",
            "accruedInterest": "0",
            "totalOrderIM": "0",
            "totalPositionIM": fmt(im),
            "totalPositionMM": fmt(mm),
            "unrealisedPnl": fmt(upnl.get(coin, ZERO)),
            "cumRealisedPnl": fmt(cum_realised.get(coin, ZERO)),
            "bonus": "0",
            "marginCollateral": True,
            "collateralSwitch": True,
            "availableToBorrow": "",
            "spotBorrow": "0",
        })
    margin_balance = totals["wallet"] + totals["upl"]
    im_rate = totals["im"] / margin_balance if margin_balance > 0 else ZERO
    mm_rate = totals["mm"] / margin_balance if margin_balance > 0 else ZERO
    return {
        "accountType": "UNIFIED",
        "accountLTV": "0",
        "accountIMRate": fmt(round(im_rate, 4)),
        "accountMMRate": fmt(round(mm_rate, 4)),
        "accountIMRateByMp": fmt(round(im_rate, 4)),
        "accountMMRateByMp": fmt(round(mm_rate, 4)),
        "totalEquity": fmt(round(totals["equity"], 8)),
        "totalWalletBalance": fmt(round(totals["wallet"], 8)),
        "totalMarginBalance": fmt(round(margin_balance, 8)),
        "totalAvailableBalance": fmt(round(margin_balance - totals["im"], 8)),
        "totalPerpUPL": fmt(round(totals["upl"], 8)),
        "totalInitialMargin": fmt(round(totals["im"], 8)),
        "totalMaintenanceMargin": fmt(round(totals["mm"], 8)),
        "totalInitialMarginByMp": fmt(round(totals["im"], 8)),
        "totalMaintenanceMarginByMp": fmt(round(totals["mm"], 8)),
        "coin": coins,
    }


def ticker(
    instrument: Instrument,
    category: str,
    symbol: str,
    quote: Quote,
    stats: MarketStats,
    touch_sizes: tuple[Decimal, Decimal],
    funding: tuple[Decimal, int] | None,
    open_interest: Decimal,
    *,
    stream: bool,
    delivery_ms: int = 0,
) -> dict[str, Any]:
    """`touch_sizes` are the bid and ask sizes at the touch; `funding` is (current rate, next funding
    time in ms) for perpetuals, None for dated futures (which have `delivery_ms`, their delivery time)."""
    now_ms = int(quote.ts.timestamp() * 1000)
    last = quote.mid
    prev_24h = stats.price_ago(now_ms, DAY_MS) or last
    high, low = stats.high_low()
    volume, turnover = stats.volume()
    item: dict[str, Any] = {"symbol": symbol}
    if not (stream and category == SPOT):
        item.update({
            "bid1Price": fmt(quote.bid),
            "bid1Size": fmt(touch_sizes[0]),
            "ask1Price": fmt(quote.ask),
            "ask1Size": fmt(touch_sizes[1]),
        })
    item.update({
        "lastPrice": fmt(last),
        "prevPrice24h": fmt(prev_24h),
        "price24hPcnt": fmt(round((last / prev_24h - 1), 6)),
        "highPrice24h": fmt(high or last),
        "lowPrice24h": fmt(low or last),
        "turnover24h": fmt(turnover),
        "volume24h": fmt(volume),
    })
    if category == SPOT:
        item["usdIndexPrice"] = fmt(quote.index or last)
        return item
    rate, next_ms = funding or (None, 0)
    item.update({
        "indexPrice": fmt(quote.index or last),
        "markPrice": fmt(quote.mark),
        "prevPrice1h": fmt(stats.price_ago(now_ms, HOUR_MS) or last),
        "openInterest": fmt(open_interest),
        "openInterestValue": fmt(round(settle_value(instrument, open_interest, quote.mark)
                                       if category == INVERSE else open_interest * quote.mark, 8)),
        "fundingRate": fmt(rate),
        "nextFundingTime": str(next_ms),
        "fundingIntervalHour": str((instrument.funding_interval_secs or 0) // 3600),
        "fundingCap": "0.005",
    })
    if stream:
        item["tickDirection"] = "ZeroPlusTick"
    else:
        item.update({
            "predictedDeliveryPrice": "",
            "basisRate": "",
            "deliveryFeeRate": "",
            "deliveryTime": str(delivery_ms),
            "basis": "",
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        })
    return item
