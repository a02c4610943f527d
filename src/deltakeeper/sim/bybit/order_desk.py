"""Bybit's orders over the engine: an order placed with Bybit's parameters and refused with Bybit's codes
and messages, found by orderId or orderLinkId, cancelled one by one or all at once, and listed with the
attributes Bybit keeps that the engine does not (`OrderMeta`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, OrderType, Side
from deltakeeper.sim.bybit import serializers
from deltakeeper.sim.bybit.protocol import (
    DUPLICATE_ORDER_LINK_ID,
    INSUFFICIENT_BALANCE,
    ORDER_NOT_EXISTS,
    PARAM_ERROR,
    SPOT,
    SPOT_DUPLICATE_ORDER_LINK_ID,
    SPOT_INSUFFICIENT_BALANCE,
    SPOT_ORDER_NOT_EXISTS,
    BybitError,
)
from deltakeeper.sim.bybit.records import OrderMeta
from deltakeeper.sim.bybit.venue_state import VenueState

RECENT_CLOSED_ORDERS = 500
PARTIAL_FILL_FRACTION = Decimal("0.5")
_ORDER_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_TIME_IN_FORCE = ("GTC", "IOC", "PostOnly")
CONDITIONAL_PARAMS = (
    "triggerPrice", "triggerDirection", "triggerBy", "orderFilter", "takeProfit", "stopLoss", "tpslMode",
    "tpTriggerBy", "slTriggerBy", "tpLimitPrice", "slLimitPrice", "tpOrderType", "slOrderType",
)
"""Bybit's parameters of conditional orders and attached take-profit / stop-loss: the emulator has neither,
and refuses an order that sets one (but `orderFilter=Order`, a plain order) rather than place it plain."""

# (engine reason fragment, derivative code and message, spot code and message)
_REFUSALS: tuple[tuple[str, int, str, int, str], ...] = (
    ("insufficient", INSUFFICIENT_BALANCE, "Insufficient available balance", SPOT_INSUFFICIENT_BALANCE,
     "Insufficient balance."),
    ("reduce-only", 110017, "ReduceOnly rule not satisified", PARAM_ERROR, "reduceOnly is not supported"),
    ("notional", 110094, "Order does not meet minimum order value", 170140,
     "Order value exceeded lower limit."),
    ("below the minimum", PARAM_ERROR, "The number of contracts exceeds minimum limit allowed", 170136,
     "Order quantity lower than the minimum."),
    ("lot step", PARAM_ERROR, "Qty invalid", 170137, "Order volume decimal too long"),
)


def decimal_param(params: Mapping[str, Any], name: str) -> Decimal | None:
    """A positive decimal parameter, or None when absent."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise BybitError(PARAM_ERROR, f"params error: {name} invalid") from None
    if not value.is_finite() or value <= 0:
        raise BybitError(PARAM_ERROR, f"params error: {name} must be positive")
    return value


def bool_param(params: Mapping[str, Any], name: str) -> bool:
    return params.get(name) in (True, "true", "True", 1, "1")


class OrderDesk(VenueState):
    """Placing, finding, cancelling and listing orders the way Bybit does."""

    def create_order(self, account: str, params: Mapping[str, Any]) -> tuple[dict[str, str], OrderState]:
        """Place an order with Bybit's parameters; (the create answer, the engine's state)."""
        for name in CONDITIONAL_PARAMS:
            if params.get(name) not in (None, "") and (name, params[name]) != ("orderFilter", "Order"):
                raise BybitError(PARAM_ERROR, f"params error: {name} is not supported")
        category = str(params.get("category", ""))
        instrument = self.market(category, params.get("symbol"))
        side = {"Buy": Side.BUY, "Sell": Side.SELL}.get(str(params.get("side")))
        order_type = {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT}.get(str(params.get("orderType")))
        if side is None or order_type is None:
            raise BybitError(PARAM_ERROR, "params error: side or orderType invalid")
        qty, price = decimal_param(params, "qty"), decimal_param(params, "price")
        if qty is None or (price is None and order_type is OrderType.LIMIT):
            raise BybitError(PARAM_ERROR, "params error: qty and, for a limit order, price are required")
        if order_type is OrderType.MARKET:
            price, time_in_force = None, "IOC"
        else:
            time_in_force = str(params.get("timeInForce") or "GTC")
            if time_in_force not in _TIME_IN_FORCE:
                raise BybitError(PARAM_ERROR, f"params error: timeInForce {time_in_force} is not supported")
        link = str(params.get("orderLinkId") or "")
        if link and not _ORDER_LINK_ID.match(link):
            raise BybitError(PARAM_ERROR, "params error: orderLinkId invalid")
        if link and (category, link) in self._link_ids[account]:
            if category == SPOT:
                raise BybitError(SPOT_DUPLICATE_ORDER_LINK_ID, "Duplicate clientOrderId.")
            raise BybitError(DUPLICATE_ORDER_LINK_ID, "OrderLinkedID is duplicate")
        quote = self.engine.quote(instrument.symbol)
        market_unit, amount = "", qty
        if category == SPOT and order_type is OrderType.MARKET:
            market_unit = str(params.get("marketUnit") or ("quoteCoin" if side is Side.BUY else "baseCoin"))
            if market_unit == "quoteCoin":
                if quote is None:
                    raise BybitError(PARAM_ERROR, "no price yet")
                touch = quote.ask if side is Side.BUY else quote.bid
                step = instrument.lot_step_contracts
                amount = (qty / touch / step).to_integral_value(ROUND_DOWN) * step
            elif market_unit != "baseCoin":
                raise BybitError(PARAM_ERROR, "params error: marketUnit invalid")
        if self.faults.roll(self.faults.config.insufficient_balance):
            raise self._refusal(category, "insufficient balance (injected)")
        reduce_only = category != SPOT and bool_param(params, "reduceOnly")
        meta = OrderMeta(
            category=category, created_ms=self.now_ms(), time_in_force=time_in_force, order_link_id=link,
            qty=qty, market_unit=market_unit, reduce_only=reduce_only,
            last_price_on_created=quote.mid if quote else None,
        )
        request = OrderRequest(
            client_order_id=link, symbol=instrument.symbol, side=side, amount_contracts=amount,
            order_type=order_type, price=price, reduce_only=reduce_only,
            post_only=time_in_force == "PostOnly",
        )
        config = self.faults.config
        self.engine.faults.partial_fill_fraction = (
            PARTIAL_FILL_FRACTION if self.faults.roll(config.partial_fill) else None
        )
        self.engine.faults.delay_market_fills = self.faults.roll(config.delayed_fill)
        self._pending = meta
        try:
            state = self.engine.place_order(account, request, self.clock.now())
        except OrderRejected as exc:
            if not request.post_only or "post-only" not in str(exc):
                raise self._refusal(category, str(exc)) from None
            state = self._refuse_post_only(account, request, meta)
        finally:
            self._pending = None
            self.engine.faults.partial_fill_fraction = None
            self.engine.faults.delay_market_fills = False
        if link:
            self._link_ids[account].add((category, link))
        if time_in_force == "IOC" and order_type is OrderType.LIMIT and not state.status.is_final:
            state = self.engine.cancel_order(account, instrument.symbol, self.clock.now(),
                                             exchange_order_id=state.exchange_order_id)
        return {"orderId": state.exchange_order_id, "orderLinkId": link}, state

    def _refuse_post_only(self, account: str, request: OrderRequest, meta: OrderMeta) -> OrderState:
        """Bybit accepts a post-only order that would take, then cancels it at once."""
        state = OrderState(
            client_order_id=request.client_order_id or None,
            exchange_order_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            symbol=request.symbol, side=request.side, amount_contracts=request.amount_contracts,
            filled_contracts=ZERO, status=OrderStatus.CANCELED, ts=self.clock.now(),
            order_type=request.order_type, price=request.price,
        )
        meta.reject_reason = "EC_PostOnlyWillTakeLiquidity"
        self._meta[state.exchange_order_id] = meta
        self._refused_post_only[account].append(state)
        self._push(account, "order", [self.order_item(state, stream=True)])
        return state

    @staticmethod
    def _refusal(category: str, reason: str) -> BybitError:
        for fragment, code, message, spot_code, spot_message in _REFUSALS:
            if fragment in reason:
                return BybitError(spot_code, spot_message) if category == SPOT else BybitError(code, message)
        return BybitError(PARAM_ERROR, reason)

    def find_order(self, account: str, params: Mapping[str, Any]) -> tuple[Instrument, OrderState]:
        """The order named by orderId (else orderLinkId) in the given category and symbol."""
        category = str(params.get("category", ""))
        instrument = self.market(category, params.get("symbol"))
        order_id, link = params.get("orderId"), params.get("orderLinkId")
        if not order_id and not link:
            raise BybitError(PARAM_ERROR, "params error: orderId or orderLinkId is required")
        for state, meta in self.orders(account, category):
            if state.symbol == instrument.symbol and (
                state.exchange_order_id == order_id if order_id else meta.order_link_id == link
            ):
                return instrument, state
        raise self._not_found(category)

    @staticmethod
    def _not_found(category: str) -> BybitError:
        if category == SPOT:
            return BybitError(SPOT_ORDER_NOT_EXISTS, "Order does not exist.")
        return BybitError(ORDER_NOT_EXISTS, "order not exists or too late to cancel")

    def cancel_order(self, account: str, params: Mapping[str, Any]) -> dict[str, str]:
        instrument, state = self.find_order(account, params)
        if state.status.is_final:
            raise self._not_found(str(params.get("category")))
        meta = self._meta[state.exchange_order_id]
        meta.cancel_type = "CancelByUser"
        self.engine.cancel_order(account, instrument.symbol, self.clock.now(),
                                 exchange_order_id=state.exchange_order_id)
        return {"orderId": state.exchange_order_id, "orderLinkId": meta.order_link_id}

    def cancel_all(self, account: str, params: Mapping[str, Any]) -> list[dict[str, str]]:
        category = str(params.get("category", ""))
        symbol = params.get("symbol")
        wanted = self.market(category, symbol).symbol if symbol else None
        cancelled = []
        for state, meta in self.orders(account, category):
            instrument = self.engine.instruments[state.symbol]
            if state.status.is_final or (wanted and state.symbol != wanted):
                continue
            if params.get("baseCoin") and instrument.base != params["baseCoin"]:
                continue
            if params.get("settleCoin") and instrument.settle != params["settleCoin"]:
                continue
            meta.cancel_type = "CancelByUser"
            self.engine.cancel_order(account, state.symbol, self.clock.now(),
                                     exchange_order_id=state.exchange_order_id)
            cancelled.append({"orderId": state.exchange_order_id, "orderLinkId": meta.order_link_id})
        return cancelled

    def orders(self, account: str, category: str) -> list[tuple[OrderState, OrderMeta]]:
        """Every order of the account in `category`, newest first."""
        states = self.engine.orders(account) + self._refused_post_only[account]
        found = [(s, self._meta[s.exchange_order_id]) for s in states if s.exchange_order_id in self._meta]
        return sorted((item for item in found if item[1].category == category),
                      key=lambda item: item[1].created_ms, reverse=True)

    def order_item(self, state: OrderState, *, stream: bool) -> dict[str, Any]:
        meta = self._meta[state.exchange_order_id]
        _, symbol = self.ids[state.symbol]
        return serializers.order(state, meta, symbol, self.stamp_ms(state.ts), stream=stream)

    def _on_order(self, account: str, event: OrderState) -> None:
        """An engine order update, pushed on the order topic with the order's Bybit attributes."""
        meta = self._meta.get(event.exchange_order_id)
        if meta is None and self._pending is not None:
            meta = self._meta[event.exchange_order_id] = self._pending
        if meta is None:
            return
        if event.status is OrderStatus.CANCELED and meta.cancel_type == "UNKNOWN" and event.reject_reason:
            meta.cancel_type = "CancelByReduceOnly"
        self._push(account, "order", [self.order_item(event, stream=True)])
