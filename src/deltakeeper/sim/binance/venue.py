"""Binance USD-M's view of the simulated engine: its linear perpetuals by Binance symbol, one account per
API key, orders placed and cancelled with Binance's parameters and refusals, and the records Binance keeps
that the engine does not (orders with numeric ids, trades with their realised PnL, the income history,
listen keys). Timestamps read the wall clock (`stamp_ms`), as in the Bybit dialect. Engine events become
user-data stream events through `private_listeners`; quotes reach `quote_listeners`."""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.binance import serializers
from deltakeeper.sim.binance.protocol import (
    CANCEL_REJECTED,
    DUPLICATE_CLIENT_ORDER_ID,
    INVALID_CLIENT_ORDER_ID,
    INVALID_LISTEN_KEY,
    INVALID_ORDER_TYPE,
    INVALID_SIDE,
    INVALID_SYMBOL,
    INVALID_TIME_IN_FORCE,
    MANDATORY_PARAM,
    MARGIN_INSUFFICIENT,
    NO_SUCH_ORDER,
    BinanceError,
    binance_symbol,
    decimal_param,
    is_usdm,
    numeric_id,
    refusal,
)
from deltakeeper.sim.binance.records import Income, OrderRecord, UserTrade
from deltakeeper.sim.bybit.faults import Faults
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.venue_common import funding_now, realised_pnl, stamp_ms

PrivateListener = Callable[[str, dict[str, Any]], None]
"""(API key, user-data event)"""

PARTIAL_FILL_FRACTION = Decimal("0.5")
LISTEN_KEY_VALID_MS = 60 * 60_000
_CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_TIME_IN_FORCE = ("GTC", "IOC", "GTX")

class BinanceVenue:
    def __init__(self, engine: SimEngine, clock: SimClock, credentials: Mapping[str, str], faults: Faults
                 ) -> None:
        self.engine = engine
        self.clock = clock
        self.credentials = dict(credentials)
        self.faults = faults
        self.launch_ms = self.now_ms()
        self.markets: dict[str, Instrument] = {
            binance_symbol(i): i for i in engine.instruments.values() if is_usdm(i)}
        self.ids = {instrument.symbol: symbol for symbol, instrument in self.markets.items()}
        """ccxt symbol -> Binance symbol"""
        self.private_listeners: list[PrivateListener] = []
        self.quote_listeners: list[Callable[[Quote], None]] = []
        self.listen_keys: dict[str, tuple[str, int]] = {}
        """listen key -> (API key, wall ms when it expires)"""
        self.book_updates: dict[str, int] = defaultdict(int)
        self._orders: dict[str, dict[int, OrderRecord]] = defaultdict(dict)
        self._by_engine_id: dict[str, OrderRecord] = {}
        self._trades: dict[str, list[UserTrade]] = defaultdict(list)
        self._income: dict[str, list[Income]] = defaultdict(list)
        self._held: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        """(API key, ccxt symbol) -> (contracts, entry price) before the latest fill"""
        self._pushed: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        self._pending: OrderRecord | None = None
        self._update_reason = "ORDER"
        engine.subscribe(self._on_event)
        engine.subscribe_quotes(self._on_quote)

    # time and markets

    def stamp_ms(self, sim_time: datetime) -> int:
        return stamp_ms(self.clock, sim_time)

    def now_ms(self) -> int:
        return self.stamp_ms(self.clock.now())

    def funding_now(self, instrument: Instrument) -> tuple[Decimal, int] | None:
        return funding_now(self.engine, self.clock, instrument)

    def market(self, symbol: object) -> Instrument:
        instrument = self.markets.get(str(symbol or ""))
        if instrument is None:
            raise BinanceError(INVALID_SYMBOL, "Invalid symbol.")
        return instrument

    # listen keys

    def listen_key(self, account: str) -> str:
        """The account's valid listen key (a new one if it has none), valid for an hour from now."""
        now_ms = self.now_ms()
        key = next((k for k, (owner, until) in self.listen_keys.items()
                    if owner == account and until > now_ms), None) or secrets.token_hex(32)
        self.listen_keys[key] = (account, now_ms + LISTEN_KEY_VALID_MS)
        return key

    def keep_alive(self, account: str) -> str:
        for key, (owner, until) in self.listen_keys.items():
            if owner == account and until > self.now_ms():
                self.listen_keys[key] = (owner, self.now_ms() + LISTEN_KEY_VALID_MS)
                return key
        raise BinanceError(INVALID_LISTEN_KEY, "This listenKey does not exist.")

    def close_listen_key(self, account: str) -> None:
        for key in [k for k, (owner, _) in self.listen_keys.items() if owner == account]:
            del self.listen_keys[key]

    def listener_account(self, listen_key: str) -> str | None:
        owner = self.listen_keys.get(listen_key)
        return owner[0] if owner and owner[1] > self.now_ms() else None

    # orders

    def create_order(self, account: str, params: Mapping[str, Any]) -> OrderRecord:
        instrument = self.market(params.get("symbol"))
        side = {"BUY": Side.BUY, "SELL": Side.SELL}.get(str(params.get("side")))
        if side is None:
            raise BinanceError(INVALID_SIDE, "Invalid side.")
        order_type = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT}.get(str(params.get("type")))
        if order_type is None:
            raise BinanceError(INVALID_ORDER_TYPE, "Invalid orderType.")
        qty = decimal_param(params, "quantity", required=True)
        price = decimal_param(params, "price", required=order_type is OrderType.LIMIT)
        assert qty is not None
        time_in_force = "GTC"
        if order_type is OrderType.LIMIT:
            time_in_force = str(params.get("timeInForce") or "")
            if time_in_force not in _TIME_IN_FORCE:
                raise BinanceError(INVALID_TIME_IN_FORCE, "Invalid timeInForce.")
        else:
            price = None
        client_id = str(params.get("newClientOrderId") or "") or f"sim{secrets.token_hex(8)}"
        if not _CLIENT_ORDER_ID.match(client_id):
            raise BinanceError(INVALID_CLIENT_ORDER_ID, "Client order id is not valid.")
        if any(r.client_order_id == client_id and r.is_open for r in self._orders[account].values()):
            raise BinanceError(DUPLICATE_CLIENT_ORDER_ID, "ClientOrderId is duplicated.")
        if self.faults.roll(self.faults.config.insufficient_balance):
            raise BinanceError(MARGIN_INSUFFICIENT, "Margin is insufficient.")
        reduce_only = str(params.get("reduceOnly", "")).lower() == "true"
        now_ms = self.now_ms()
        self._pending = OrderRecord(
            order_id=0, engine_id="", symbol=binance_symbol(instrument), client_order_id=client_id,
            side=str(params["side"]), order_type=str(params["type"]), time_in_force=time_in_force,
            orig_qty=qty, price=price or ZERO, reduce_only=reduce_only, created_ms=now_ms, update_ms=now_ms)
        request = OrderRequest(client_order_id=client_id, symbol=instrument.symbol, side=side,
                               amount_contracts=qty, order_type=order_type, price=price,
                               reduce_only=reduce_only, post_only=time_in_force == "GTX")
        config = self.faults.config
        self.engine.faults.partial_fill_fraction = (
            PARTIAL_FILL_FRACTION if self.faults.roll(config.partial_fill) else None)
        self.engine.faults.delay_market_fills = self.faults.roll(config.delayed_fill)
        try:
            state = self.engine.place_order(account, request, self.clock.now())
        except OrderRejected as exc:
            raise refusal(str(exc)) from None
        finally:
            self._pending = None
            self.engine.faults.partial_fill_fraction = None
            self.engine.faults.delay_market_fills = False
        record = self._record(account, state.exchange_order_id)
        if time_in_force == "IOC" and not state.status.is_final:
            self.engine.cancel_order(account, instrument.symbol, self.clock.now(),
                                     exchange_order_id=state.exchange_order_id)
        return record

    def find_order(self, account: str, params: Mapping[str, Any]) -> OrderRecord:
        """The order named by orderId, else origClientOrderId (the latest with it), on `symbol`."""
        symbol = binance_symbol(self.market(params.get("symbol")))
        order_id, client_id = str(params.get("orderId") or ""), str(params.get("origClientOrderId") or "")
        if not order_id and not client_id:
            raise BinanceError(MANDATORY_PARAM, "Param 'origClientOrderId' or 'orderId' must be sent, but "
                               "both were empty/null!")
        orders = self._orders[account]
        if order_id:
            found = orders.get(int(order_id)) if order_id.isdigit() else None
        else:
            found = next((r for r in reversed(orders.values()) if r.client_order_id == client_id), None)
        if found is None or found.symbol != symbol:
            raise BinanceError(NO_SUCH_ORDER, "Order does not exist.")
        return found

    def cancel_order(self, account: str, params: Mapping[str, Any]) -> OrderRecord:
        try:
            record = self.find_order(account, params)
        except BinanceError as exc:
            if exc.code != NO_SUCH_ORDER:
                raise
            raise BinanceError(CANCEL_REJECTED, "Unknown order sent.") from None
        if not record.is_open:
            raise BinanceError(CANCEL_REJECTED, "Unknown order sent.")
        self.engine.cancel_order(account, self.markets[record.symbol].symbol, self.clock.now(),
                                 exchange_order_id=record.engine_id)
        return record

    def cancel_all(self, account: str, symbol: object) -> None:
        instrument = self.market(symbol)
        self.engine.cancel_all(account, instrument.symbol, self.clock.now())

    def orders(self, account: str, symbol: str | None = None) -> list[OrderRecord]:
        """Every order of the account (on `symbol`), oldest first."""
        return [r for r in self._orders[account].values() if symbol is None or r.symbol == symbol]

    def trades(self, account: str) -> list[UserTrade]:
        return self._trades[account]

    def income(self, account: str) -> list[Income]:
        return self._income[account]

    def positions(self, account: str) -> dict[str, Position]:
        """The open positions by Binance symbol."""
        return {self.ids[p.symbol]: p for p in self.engine.positions(account) if p.symbol in self.ids}

    def mark(self, instrument: Instrument) -> Decimal:
        quote = self.engine.quote(instrument.symbol)
        return quote.mark if quote else ZERO

    # engine events

    def _record(self, account: str, engine_id: str) -> OrderRecord:
        """The record of an engine order: found, or made from the order being placed."""
        record = self._by_engine_id.get(engine_id)
        if record is None:
            if self._pending is None:
                raise KeyError(engine_id)
            record = self._pending
            record.order_id, record.engine_id = numeric_id(engine_id), engine_id
            self._by_engine_id[engine_id] = record
            self._orders[account][record.order_id] = record
        return record

    def _push(self, account: str, event: dict[str, Any]) -> None:
        for listener in self.private_listeners:
            listener(account, event)

    def _announce(self, account: str, record: OrderRecord, event_ms: int) -> None:
        """Push the order's NEW update once, before any other update of it."""
        if not record.announced:
            record.announced = True
            status, record.status = record.status, "NEW"
            self._push(account, serializers.order_update(record, "NEW", event_ms))
            record.status = status

    def _on_event(self, account: str, event: AccountEvent) -> None:
        if isinstance(event, Fill):
            self._on_fill(account, event)
        elif isinstance(event, FundingPayment):
            self._on_funding(account, event)
        elif isinstance(event, OrderState):
            self._on_order(account, event)
        elif isinstance(event, AccountSnapshot):
            self._on_snapshot(account, event)

    def _on_order(self, account: str, state: OrderState) -> None:
        if state.symbol not in self.ids or (state.exchange_order_id not in self._by_engine_id
                                            and self._pending is None):
            return
        record = self._record(account, state.exchange_order_id)
        event_ms = self.stamp_ms(state.ts)
        self._announce(account, record, event_ms)
        if state.status is OrderStatus.CANCELED and record.is_open:
            record.status = "EXPIRED" if record.time_in_force == "IOC" else "CANCELED"
            record.update_ms = event_ms
            self._push(account, serializers.order_update(record, record.status, event_ms))

    def _on_fill(self, account: str, fill: Fill) -> None:
        if fill.symbol not in self.ids:
            return
        instrument = self.engine.instruments[fill.symbol]
        event_ms = self.stamp_ms(fill.ts)
        if fill.exchange_order_id not in self._by_engine_id and self._pending is None:
            if not fill.liquidation:
                return
            self._pending = _liquidation_order(self.ids[fill.symbol], fill, event_ms)
            try:
                record = self._record(account, fill.exchange_order_id)
            finally:
                self._pending = None
        else:
            record = self._record(account, fill.exchange_order_id)
        self._announce(account, record, event_ms)
        held, entry = self._held.get((account, fill.symbol), (ZERO, ZERO))
        _, realized = realised_pnl(instrument, held, entry, fill)
        now_held = next((p for p in self.engine.positions(account) if p.symbol == fill.symbol), None)
        self._held[(account, fill.symbol)] = (now_held.contracts, now_held.entry_price) if now_held else (
            ZERO, ZERO)
        record.executed_qty += fill.amount_contracts
        record.cum_quote += fill.amount_contracts * fill.price * instrument.contract_size
        record.status = "FILLED" if record.executed_qty >= record.orig_qty else "PARTIALLY_FILLED"
        record.update_ms = event_ms
        trade_id = numeric_id(fill.trade_id)
        self._trades[account].append(UserTrade(
            trade_id=trade_id, order_id=record.order_id, symbol=record.symbol, side=record.side,
            price=fill.price, qty=fill.amount_contracts,
            quote_qty=fill.amount_contracts * fill.price * instrument.contract_size, commission=fill.fee,
            commission_asset=fill.fee_currency, realized_pnl=realized, time_ms=event_ms, maker=fill.is_maker))
        for kind, (income_type, amount) in enumerate((("REALIZED_PNL", realized), ("COMMISSION", -fill.fee))):
            if amount:
                self._income[account].append(Income(
                    tran_id=trade_id * 10 + 1 + kind, symbol=record.symbol,
                    income_type=income_type, income=amount, asset=fill.fee_currency, time_ms=event_ms,
                    trade_id=str(trade_id)))
        self._update_reason = "ORDER"
        self._push(account, serializers.order_update(record, "TRADE", event_ms, fill, trade_id, realized))

    def _on_funding(self, account: str, payment: FundingPayment) -> None:
        if payment.symbol not in self.ids:
            return
        self._income[account].append(Income(
            tran_id=numeric_id(payment.payment_id), symbol=self.ids[payment.symbol],
            income_type="FUNDING_FEE", income=payment.amount, asset=payment.currency,
            time_ms=self.stamp_ms(payment.ts)))
        self._update_reason = "FUNDING_FEE"

    def _on_snapshot(self, account: str, snapshot: AccountSnapshot) -> None:
        held = {p.symbol: p for p in snapshot.positions if p.symbol in self.ids}
        changed: list[tuple[str, Position | None]] = []
        for symbol in sorted({*held, *(s for (key, s) in self._pushed if key == account)}):
            position = held.get(symbol)
            signature = (position.contracts, position.entry_price) if position else (ZERO, ZERO)
            if self._pushed.get((account, symbol), (ZERO, ZERO)) != signature:
                self._pushed[(account, symbol)] = signature
                changed.append((self.ids[symbol], position))
        event_ms = self.stamp_ms(snapshot.ts)
        self._push(account, serializers.account_update(event_ms, self._update_reason,
                                                       self.engine.balances(account), changed))
        self._update_reason = "ORDER"

    def _on_quote(self, quote: Quote) -> None:
        if quote.symbol in self.ids:
            self.book_updates[quote.symbol] += 1
            for listener in self.quote_listeners:
                listener(quote)


def _liquidation_order(symbol: str, fill: Fill, event_ms: int) -> OrderRecord:
    """The liquidation engine's order behind one of the engine's liquidation fills: Binance names its
    client order id `autoclose-` and the time."""
    return OrderRecord(
        order_id=0, engine_id="", symbol=symbol, client_order_id=f"autoclose-{event_ms}",
        side="BUY" if fill.side is Side.BUY else "SELL", order_type="LIMIT", time_in_force="IOC",
        orig_qty=fill.amount_contracts, price=fill.price, reduce_only=True, created_ms=event_ms,
        update_ms=event_ms)
