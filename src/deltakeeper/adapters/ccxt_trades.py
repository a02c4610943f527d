"""ccxt orders, trades and funding payments, as OrderStates, Fills and FundingPayments.

Liquidation and auto-deleveraging (ADL) fills: the exchange closed (part of) a position itself. A fill is
marked `liquidation` where the exchange's trade says so (`is_liquidation_trade`), and then carries no client
order id:
- Bybit: `info.execType` BustTrade (takeover liquidation) or AdlTrade (Bybit v5 docs, Enums: execType).
- Deribit: the account's own side was under liquidation: its role `info.liquidity` ("M" maker, "T" taker)
  is in `info.liquidation` ("M", "T" or "MT": which side of the trade was under liquidation; the trade of
  a counterparty's liquidation carries the field too), or the account's order is `info.order_type`
  "liquidation" (docs.deribit.com, private/get_user_trades_by_currency).
- Binance futures: the order's client id starts with `autoclose-` (liquidation) or `adl_autoclose` (ADL)
  (Binance USDⓈ-M user data stream, ORDER_TRADE_UPDATE: "special client order id"). Binance's REST trade
  list (`userTrades`) carries no client id: there only the websocket's trades are recognised.
- OKX: the fill's `info.subType` is a liquidation (100-107) or ADL (125-128) transaction type (OKX v5
  docs, `GET /api/v5/trade/fills` subType, the bill subtype codes).

Deliveries: the exchange closed an expired (or delisted) contract at its settlement price, no order of
ours. A fill is marked `delivery` where the trade says so (`is_delivery_trade`), and then carries no client
order id; its price may be 0 (an option that expired worthless):
- Bybit: `info.execType` Delivery (USDC and USDT futures' delivery, options' delivery, a delisted
  contract) or Settle (inverse futures' settlement, a delisted contract) (Bybit v5 docs, Enums: execType).
- Elsewhere deliveries are not read as trades (Deribit and OKX report them apart from the fills).

A fill's USD notional (`fill_from_trade`): `contracts x contract size x price` is USD face for an inverse
contract, the premium in the settle coin for an option (Deribit's BTC options are priced in BTC, Bybit's in
USDC), and an amount of the quote for spot and linear contracts (a BNB/BTC fill is worth BTC). In a
stablecoin (or USD) it is the USD notional as is; in a coin it is converted at that coin's USD price: the
trade's own index where the exchange gives one for that coin (Deribit `index_price`, the underlying's USD
index at the trade), else the price the caller passes (the adapter reads the coin's pricing market).
Without one the fill's USD value is unknown (`FillValueUnknown`): it is never journaled with a notional in
another currency.

Funding amounts are signed from the account's view, positive = received:
- Bybit's execution list reports `execFee` positive when the account paid: the amount is `-execFee`.
- Other exchanges' ccxt funding history already uses positive = received.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from deltakeeper.adapters.ccxt_parse import (
    BINANCE_IDS,
    MalformedPayload,
    dec,
    info_of,
    opt_dec,
    opt_text,
    parser,
    side_of,
    text,
    ts_from_ms,
)
from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.orders import Fill, FundingPayment, OrderRequest, OrderState, OrderStatus, OrderType

_TRADE_INDEX_PRICE_KEYS = {"deribit": "index_price"}
"""The USD index of the traded instrument's base coin at the trade, in the exchange's trade."""

_CLIENT_ID_INFO_KEYS = ("orderLinkId", "clOrdId", "clientOrderId", "label", "cloid")
"""Where exchanges put the client order id in a trade (Bybit, OKX, Binance, Deribit, Hyperliquid)."""

_BYBIT_LIQUIDATION_EXEC_TYPES = frozenset({"BustTrade", "AdlTrade"})
_BYBIT_DELIVERY_EXEC_TYPES = frozenset({"Delivery", "Settle"})
_BINANCE_LIQUIDATION_CLIENT_IDS = ("autoclose-", "adl_autoclose")
_OKX_LIQUIDATION_SUB_TYPES = frozenset({*map(str, range(100, 108)), *map(str, range(125, 129))})

_FUNDING_IDS_SHARED = frozenset({"hyperliquid"})
"""Exchanges whose funding entries share their id: Hyperliquid's `userFunding` entries all carry the zero
hash (ccxt's id), so a payment is named by its market and time (one per market and hour)."""

_REFUSALS_AFTER_ACCEPT = frozenset({"EC_PostOnlyWillTakeLiquidity"})
"""Bybit's reasons for cancelling an order it has just accepted, before it could rest or fill."""

_STATUSES = {"open": OrderStatus.OPEN, "canceled": OrderStatus.CANCELED, "expired": OrderStatus.CANCELED,
             "rejected": OrderStatus.REJECTED}


class FillValueUnknown(Exception):
    """A fill whose value is in `currency`, a coin, with no USD price for it: a well-formed fill the caller
    values once it has the price (not a ValueError, which the parsers' boundary takes for a malformed
    message and skips)."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        super().__init__(f"a fill valued in {currency} needs {currency}'s USD price")


@parser("order")
def order_from_ccxt(order: Mapping[str, Any], received_at: datetime,
                    request: OrderRequest | None = None) -> OrderState:
    """A ccxt order. `request` fills what an acknowledgement leaves out (Bybit's answer to create_order
    carries only the ids): an acknowledged order without a status is open."""
    amount = opt_dec(order.get("amount"), "amount")
    if amount is None:
        if request is None:
            raise MalformedPayload("amount", "a number", None)
        amount = request.amount_contracts
    filled = opt_dec(order.get("filled"), "filled") or ZERO
    status_name = order.get("status")
    if status_name is None:
        status = OrderStatus.OPEN
    elif status_name == "closed":
        status = OrderStatus.FILLED if filled >= amount else OrderStatus.CANCELED
    elif status_name in _STATUSES:
        status = _STATUSES[status_name]
    else:
        raise MalformedPayload("status", "open, closed, canceled, expired or rejected", status_name)
    if status is OrderStatus.OPEN and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    reject_reason = opt_text(info_of(order), "rejectReason")
    if status is OrderStatus.CANCELED and filled == 0 and reject_reason in _REFUSALS_AFTER_ACCEPT:
        status = OrderStatus.REJECTED  # accepted, then refused by the exchange itself: never resting
    order_type = order.get("type") or (request.order_type.value if request else None)
    if order_type not in ("market", "limit"):
        raise MalformedPayload("type", "market or limit", order_type)
    updated = order.get("lastUpdateTimestamp") or order.get("timestamp")
    if order.get("side") in ("buy", "sell") or request is None:
        side = side_of(order)
    else:
        side = request.side
    return OrderState(
        client_order_id=opt_text(order, "clientOrderId") or (request.client_order_id if request else None),
        exchange_order_id=text(order, "id"),
        symbol=opt_text(order, "symbol") or (request.symbol if request else text(order, "symbol")),
        side=side,
        amount_contracts=amount,
        filled_contracts=filled,
        status=status,
        ts=received_at if updated is None else ts_from_ms(updated),
        average_price=opt_dec(order.get("average"), "average"),
        order_type=OrderType(order_type),
        price=opt_dec(order.get("price"), "price"),
        reject_reason=reject_reason if status is OrderStatus.REJECTED else None,
    )


@parser("trade")
def is_funding_trade(trade: Mapping[str, Any], exchange_id: str) -> bool:
    """Bybit pushes funding settlements on its execution channel (`execType` Funding)."""
    return exchange_id == "bybit" and info_of(trade).get("execType") == "Funding"


@parser("trade")
def is_liquidation_trade(trade: Mapping[str, Any], exchange_id: str) -> bool:
    """The exchange closed the position itself: a liquidation or ADL execution (module notes)."""
    info = info_of(trade)
    if exchange_id == "bybit":
        return info.get("execType") in _BYBIT_LIQUIDATION_EXEC_TYPES
    if exchange_id == "deribit":
        role = str(info.get("liquidity") or "")
        liquidated_sides = str(info.get("liquidation") or "")
        return info.get("order_type") == "liquidation" or (role != "" and role in liquidated_sides)
    if exchange_id in BINANCE_IDS:
        client_id = str(trade.get("clientOrderId") or info.get("c") or info.get("clientOrderId") or "")
        return client_id.startswith(_BINANCE_LIQUIDATION_CLIENT_IDS)
    if exchange_id == "okx":
        return str(info.get("subType")) in _OKX_LIQUIDATION_SUB_TYPES
    return False


@parser("trade")
def is_delivery_trade(trade: Mapping[str, Any], exchange_id: str) -> bool:
    """The exchange closed an expired or delisted contract at its settlement price (module notes)."""
    return exchange_id == "bybit" and info_of(trade).get("execType") in _BYBIT_DELIVERY_EXEC_TYPES


def fill_value_currency(instrument: Instrument) -> str:
    """The currency of a fill's `contracts x contract size x price` (module notes)."""
    if instrument.inverse:
        return "USD"
    return instrument.settle if instrument.is_option else instrument.quote


@parser("trade")
def fill_from_trade(trade: Mapping[str, Any], instrument: Instrument, exchange_id: str,
                    value_coin_usd: Decimal | None = None) -> Fill:
    """One of the account's trades; the fee is what the account paid (negative for a rebate). A liquidation
    or ADL fill is marked so, without a client order id. `value_coin_usd` is the USD price of the coin the
    fill is valued in (module notes), used where the trade carries none; without either a fill valued in a
    coin raises FillValueUnknown. A delivery is marked so, without a client order id, and may be priced 0 (an
    option that expired worthless)."""
    info = info_of(trade)
    amount = dec(trade.get("amount"), "amount")
    price = dec(trade.get("price"), "price")
    delivery = is_delivery_trade(trade, exchange_id)
    if amount <= 0 or price < 0 or (price == 0 and not delivery):
        raise MalformedPayload("amount/price", "positive numbers", (trade.get("amount"), trade.get("price")))
    value = instrument.notional_usd(amount, price)
    currency = fill_value_currency(instrument)
    if not is_stable(currency):
        index = opt_dec(info.get(_TRADE_INDEX_PRICE_KEYS.get(exchange_id, "")), "info.index_price")
        coin_usd = index if index is not None and currency == instrument.base else value_coin_usd
        if coin_usd is None:
            raise FillValueUnknown(currency)
        if coin_usd <= 0:
            raise MalformedPayload("index_price", "a positive price", coin_usd)
        value *= coin_usd
    fee = trade.get("fee") or {}
    liquidation = is_liquidation_trade(trade, exchange_id)
    client_id = next((str(info[key]) for key in _CLIENT_ID_INFO_KEYS if info.get(key)), None)
    return Fill(
        trade_id=text(trade, "id"),
        exchange_order_id=text(trade, "order"),
        client_order_id=None if liquidation or delivery else opt_text(trade, "clientOrderId") or client_id,
        symbol=instrument.symbol,
        side=side_of(trade),
        amount_contracts=amount,
        price=price,
        fee=opt_dec(fee.get("cost"), "fee.cost") or ZERO,
        fee_currency=str(fee.get("currency") or instrument.settle).upper(),
        ts=ts_from_ms(trade.get("timestamp")),
        notional_usd=value,
        is_maker=trade.get("takerOrMaker") == "maker",
        liquidation=liquidation,
        delivery=delivery,
    )


@parser("funding payment")
def funding_from_ccxt(item: Mapping[str, Any], instrument: Instrument, exchange_id: str) -> FundingPayment:
    """A funding payment, positive = received, in the instrument's settle coin.

    Bybit: from the raw execution (a `fetch_funding_history` entry or a Funding trade from the execution
    channel alike). `execFee` is positive when paid; the position's sign follows from who paid at which
    rate (positive rates: longs pay), `execQty` is its size. Others: ccxt's funding history entry
    (Hyperliquid's named by market and time: `_FUNDING_IDS_SHARED`).
    """
    if exchange_id == "bybit":
        info = info_of(item)
        paid = dec(info.get("execFee"), "info.execFee")
        rate = dec(info.get("feeRate"), "info.feeRate")
        size = abs(dec(info.get("execQty"), "info.execQty"))
        if paid and rate:
            long = (paid > 0) == (rate > 0)
        else:
            long = info.get("side") == "Buy"
        return FundingPayment(
            payment_id=text(info, "execId"), symbol=instrument.symbol, amount=-paid,
            currency=instrument.settle, rate=rate, position_contracts=size if long else -size,
            ts=ts_from_ms(info.get("execTime"), "info.execTime"),
        )
    payment_id = text(item, "id")
    if exchange_id in _FUNDING_IDS_SHARED:
        payment_id = f"funding:{instrument.symbol}:{int(dec(item.get('timestamp'), 'timestamp'))}"
    return FundingPayment(
        payment_id=payment_id, symbol=instrument.symbol, amount=dec(item.get("amount"), "amount"),
        currency=str(item.get("code") or instrument.settle).upper(),
        rate=opt_dec(item.get("rate"), "rate") or ZERO, position_contracts=ZERO,
        ts=ts_from_ms(item.get("timestamp")),
    )


@parser("transaction log entry")
def deribit_funding_from_log(entry: Mapping[str, Any], instrument: Instrument) -> FundingPayment | None:
    """A perpetual's funding from an entry of Deribit's `private/get_transaction_log`: a `settlement` of
    a perpetual whose `interest_pl` (the session's funding, in the settlement currency, positive =
    received) is not zero; None for any other entry. The entry's `id` is the payment id."""
    if entry.get("type") != "settlement" or instrument.kind is not Kind.PERPETUAL:
        return None
    amount = dec(entry.get("interest_pl"), "interest_pl")
    if not amount:
        return None
    return FundingPayment(
        payment_id=f"log{text(entry, 'id')}", symbol=instrument.symbol, amount=amount,
        currency=str(entry.get("currency") or instrument.settle).upper(), rate=ZERO,
        position_contracts=ZERO, ts=ts_from_ms(entry.get("timestamp")),
    )

