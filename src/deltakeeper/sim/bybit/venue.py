"""Bybit's view of the simulated engine: markets by category and Bybit symbol, one account per API key,
orders placed and cancelled with Bybit's parameters and refusals, and the records Bybit keeps that the
engine does not (order attributes, executions with their ids, realised PnL, the transaction log,
funding-rate history, 24h statistics). Every timestamp the venue sends reads one clock, the wall clock
(`stamp_ms`): the simulated clock only paces the market, and an event of simulated time `t` is stamped
with the wall time at which the simulated clock read `t`, so that orders, executions, positions, tickers and
`/v5/market/time` agree, as they do on Bybit. The engine's liquidations appear as Bybit shows a takeover
liquidation: an order of the liquidation engine and its BustTrade execution. Engine events become
private-topic pushes through `private_listeners`; quotes reach `quote_listeners`."""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
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
from deltakeeper.sim.bybit import options, serializers
from deltakeeper.sim.bybit.faults import Faults
from deltakeeper.sim.bybit.protocol import (
    CATEGORIES,
    DUPLICATE_ORDER_LINK_ID,
    INSUFFICIENT_BALANCE,
    ORDER_NOT_EXISTS,
    PARAM_ERROR,
    SPOT,
    SPOT_DUPLICATE_ORDER_LINK_ID,
    SPOT_INSUFFICIENT_BALANCE,
    SPOT_ORDER_NOT_EXISTS,
    BybitError,
    bybit_symbol,
    category_of,
)
from deltakeeper.sim.bybit.records import Execution, LedgerEntry, MarketStats, OrderMeta, PositionBook
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.venue_common import funding_now, realised_pnl, stamp_ms, to_ms, usd_price

PrivateListener = Callable[[str, str, list[dict[str, Any]]], None]
"""(api key, topic, data items)"""

RECENT_CLOSED_ORDERS = 500
PARTIAL_FILL_FRACTION = Decimal("0.5")
REST_ARRIVALS_KEPT = 1000
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


def user_id(account: str) -> int:
    """The Bybit user id of an API key's account (stable across runs)."""
    return int(hashlib.sha256(account.encode()).hexdigest()[8:15], 16)


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


class BybitVenue:
    def __init__(
        self,
        engine: SimEngine,
        clock: SimClock,
        credentials: Mapping[str, str],
        faults: Faults,
        *,
        allow_withdraw: bool = False,
        seed: int = 0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.credentials = dict(credentials)
        self.faults = faults
        self.allow_withdraw = allow_withdraw
        self.margin_mode = "REGULAR_MARGIN"
        """`/v5/account/info`'s marginMode: REGULAR_MARGIN, PORTFOLIO_MARGIN or ISOLATED_MARGIN."""
        self.launch_ms = self.stamp_ms(clock.now())
        self.markets: dict[tuple[str, str], Instrument] = {}
        self.ids: dict[str, tuple[str, str]] = {}
        """ccxt symbol -> (category, Bybit symbol)"""
        for instrument in engine.instruments.values():
            category = category_of(instrument)
            if category is not None:
                self.markets[(category, bybit_symbol(instrument))] = instrument
                self.ids[instrument.symbol] = (category, bybit_symbol(instrument))
        self.private_listeners: list[PrivateListener] = []
        self.quote_listeners: list[Callable[[Quote], None]] = []
        self.stats: dict[str, MarketStats] = defaultdict(MarketStats)
        self.funding_history: dict[str, list[tuple[int, Decimal]]] = defaultdict(list)
        self.book_updates: dict[str, int] = defaultdict(int)
        self.rest_arrivals: deque[float] = deque(maxlen=REST_ARRIVALS_KEPT)
        """The event loop's monotonic time of each REST request's arrival, the latest ones."""
        self.api_calls: dict[tuple[str, str], deque[int]] = defaultdict(deque)
        """(API key, path) -> wall times in ms of its requests in the current rate-limit window."""
        self._rng = random.Random(seed)
        self._seq = 0
        self._meta: dict[str, OrderMeta] = {}
        self._pending: OrderMeta | None = None
        self._refused_post_only: dict[str, list[OrderState]] = defaultdict(list)
        self._link_ids: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._executions: dict[str, list[Execution]] = defaultdict(list)
        self._ledger: dict[str, list[LedgerEntry]] = defaultdict(list)
        self._books: dict[tuple[str, str], PositionBook] = {}
        self._pushed_positions: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        """The last pushed (size, entry, realised PnL, option mark) of each position: an option position is
        pushed again when its mark moves, with its greeks."""
        self._funding_slots: dict[str, int] = {}
        engine.subscribe(self._on_event)
        engine.subscribe_quotes(self._on_quote)

    # time and markets

    def stamp_ms(self, sim_time: datetime) -> int:
        """The timestamp, in ms since the epoch on the wall clock, of what happens at simulated `sim_time`."""
        return stamp_ms(self.clock, sim_time)

    def now_ms(self) -> int:
        return self.stamp_ms(self.clock.now())

    def market(self, category: str, symbol: object) -> Instrument:
        if category not in CATEGORIES:
            raise BybitError(PARAM_ERROR, f"Illegal category: {category}")
        instrument = self.markets.get((category, str(symbol)))
        if instrument is None:
            raise BybitError(PARAM_ERROR, "Not supported symbols")
        return instrument

    def listed(self, category: str) -> list[tuple[str, Instrument]]:
        """The markets of `category` by Bybit symbol; an option or a dated future until its expiry."""
        now = self.clock.now()
        return [(symbol, i) for (cat, symbol), i in sorted(self.markets.items())
                if cat == category and (i.expiry is None or i.expiry > now)]

    def funding_now(self, instrument: Instrument) -> tuple[Decimal, int] | None:
        """(current funding rate, next funding time in ms) of a perpetual."""
        return funding_now(self.engine, self.clock, instrument)

    def open_interest(self, instrument: Instrument) -> Decimal:
        total = ZERO
        for key in self.credentials:
            if self.engine.has_account(key):
                total += sum((abs(p.contracts) for p in self.engine.positions(key)
                              if p.symbol == instrument.symbol), ZERO)
        return total * (1 if instrument.inverse else instrument.contract_size)

    # orders

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

    # executions, positions, wallet, ledger

    def executions(self, account: str) -> list[Execution]:
        """Newest first."""
        return self._executions[account][::-1]

    def ledger(self, account: str) -> list[LedgerEntry]:
        """Newest first."""
        return self._ledger[account][::-1]

    def positions(self, account: str, category: str) -> list[tuple[str, Instrument, Position | None]]:
        held = {p.symbol: p for p in self.engine.positions(account)}
        return [(symbol, instrument, held.get(instrument.symbol))
                for symbol, instrument in self.listed(category)]

    def position_item(self, account: str, instrument: Instrument, held: Position | None, *,
                      stream: bool) -> dict[str, Any]:
        category, symbol = self.ids[instrument.symbol]
        book = self._books.get((account, instrument.symbol), PositionBook())
        quote = self.engine.quote(instrument.symbol)
        if held is None and quote is not None:
            held = Position(instrument.symbol, ZERO, ZERO, quote.mark, ZERO)
        item = serializers.position(instrument, category, symbol, held, book, self.engine.leverage,
                                    stream=stream)
        if instrument.is_option:
            item.update(options.position_greeks(instrument, held, quote))
        return item

    def wallet_item(self, account: str) -> dict[str, Any]:
        locked: dict[str, Decimal] = defaultdict(Decimal)
        for state in self.engine.open_orders(account):
            instrument = self.engine.instruments[state.symbol]
            if instrument.is_derivative:
                continue
            remaining = state.amount_contracts - state.filled_contracts
            if state.side is Side.SELL:
                locked[instrument.base] += remaining
            elif state.price is not None:
                locked[instrument.quote] += remaining * state.price * (1 + instrument.taker_fee_rate)
        cum_realised: dict[str, Decimal] = defaultdict(Decimal)
        for (key, symbol), book in self._books.items():
            if key == account:
                cum_realised[self.engine.instruments[symbol].settle] += book.cum_realised
        positions = [(self.engine.instruments[p.symbol], p) for p in self.engine.positions(account)]
        return serializers.wallet(self.engine.balances(account), positions, locked, cum_realised,
                                  self.usd_price)

    def usd_price(self, coin: str) -> Decimal | None:
        return usd_price(self.engine, coin)

    # engine events

    def _push(self, account: str, topic: str, data: list[dict[str, Any]]) -> None:
        for listener in self.private_listeners:
            listener(account, topic, data)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _on_event(self, account: str, event: AccountEvent) -> None:
        if isinstance(event, Fill):
            self._on_fill(account, event)
        elif isinstance(event, FundingPayment):
            self._on_funding(account, event)
        elif isinstance(event, OrderState):
            meta = self._meta.get(event.exchange_order_id)
            if meta is None and self._pending is not None:
                meta = self._meta[event.exchange_order_id] = self._pending
            if meta is None:
                return
            if event.status is OrderStatus.CANCELED and meta.cancel_type == "UNKNOWN" and event.reject_reason:
                meta.cancel_type = "CancelByReduceOnly"
            self._push(account, "order", [self.order_item(event, stream=True)])
        elif isinstance(event, AccountSnapshot):
            self._on_snapshot(account, event)

    def _on_fill(self, account: str, fill: Fill) -> None:
        meta = self._meta.get(fill.exchange_order_id)
        if meta is None and fill.liquidation:
            meta = self._meta[fill.exchange_order_id] = self._takeover_order(fill)
        if meta is None and self._pending is not None:
            meta = self._meta[fill.exchange_order_id] = self._pending
        if meta is None:
            return
        instrument = self.engine.instruments[fill.symbol]
        category, symbol = self.ids[fill.symbol]
        value = serializers.settle_value(instrument, fill.amount_contracts, fill.price)
        meta.cum_exec_value += value
        meta.cum_exec_fee += fill.fee
        meta.fee_currency = fill.fee_currency
        ms = self.stamp_ms(fill.ts)
        seq = self._next_seq()
        closed, realised = ZERO, ZERO
        if instrument.is_derivative:
            closed, realised = self._on_position_fill(account, instrument, fill, ms, seq)
            meta.closed_pnl += realised
        state = self.engine.order(account, exchange_order_id=fill.exchange_order_id)
        quote = self.engine.quote(fill.symbol)
        execution = Execution(
            category=category, symbol=symbol, exec_id=fill.trade_id, order_id=fill.exchange_order_id,
            order_link_id=meta.order_link_id, side=serializers.side_name(fill.side.sign),
            order_price=state.price if state else None, order_qty=meta.qty,
            leaves_qty=state.amount_contracts - state.filled_contracts if state else ZERO,
            order_type="Limit" if state and state.order_type is OrderType.LIMIT else "Market",
            exec_type="BustTrade" if fill.liquidation else "Trade", exec_price=fill.price,
            exec_qty=fill.amount_contracts, exec_value=value, exec_fee=fill.fee,
            fee_rate=instrument.maker_fee_rate if fill.is_maker else instrument.taker_fee_rate,
            fee_currency=fill.fee_currency, is_maker=fill.is_maker,
            mark_price=quote.mark if quote else fill.price,
            index_price=quote.index if quote else None, closed_size=closed, exec_ms=ms, seq=seq,
        )
        self._executions[account].append(execution)
        self.stats[fill.symbol].on_trade(to_ms(fill.ts), fill.amount_contracts, value)
        if instrument.is_derivative:
            self._record(account, instrument, execution, "LIQUIDATION" if fill.liquidation else "TRADE",
                         cash_flow=realised, funding=ZERO)
        self._push(account, "execution", [serializers.execution(execution, stream=True)])

    def _takeover_order(self, fill: Fill) -> OrderMeta:
        """The liquidation engine's order behind one of the engine's liquidation fills: reduce-only, IOC, no
        orderLinkId, `createType` CreateByTakeOver_PassThrough. Its execution is a BustTrade."""
        quote = self.engine.quote(fill.symbol)
        return OrderMeta(
            category=self.ids[fill.symbol][0], created_ms=self.stamp_ms(fill.ts), time_in_force="IOC",
            order_link_id="", qty=fill.amount_contracts, reduce_only=True,
            last_price_on_created=quote.mid if quote else None, create_type=serializers.TAKEOVER_CREATE_TYPE,
        )

    def _on_position_fill(self, account: str, instrument: Instrument, fill: Fill, ms: int,
                          seq: int) -> tuple[Decimal, Decimal]:
        """Update the position book; (closed size, realised PnL) of the fill, as the engine counts it."""
        book = self._books.setdefault((account, instrument.symbol), PositionBook())
        held = book.contracts
        closed, realised = realised_pnl(instrument, held, book.entry_price, fill)
        if held == 0:
            book.created_ms, book.cur_realised = ms, ZERO
        book.cum_realised += realised - fill.fee
        book.cur_realised += realised - fill.fee
        now_held = next((p for p in self.engine.positions(account) if p.symbol == instrument.symbol), None)
        book.contracts = now_held.contracts if now_held else ZERO
        book.entry_price = now_held.entry_price if now_held else ZERO
        book.updated_ms, book.seq = ms, seq
        return closed, realised

    def _on_funding(self, account: str, payment: FundingPayment) -> None:
        instrument = self.engine.instruments[payment.symbol]
        category, symbol = self.ids[payment.symbol]
        ms = self.stamp_ms(payment.ts)
        seq = self._next_seq()
        book = self._books.setdefault((account, instrument.symbol), PositionBook())
        book.cum_realised += payment.amount
        book.cur_realised += payment.amount
        book.updated_ms, book.seq = ms, seq
        quote = self.engine.quote(payment.symbol)
        mark = quote.mark if quote else ZERO
        size = abs(payment.position_contracts)
        side = serializers.side_name(1 if payment.position_contracts > 0 else -1)
        # Bybit names a funding fee's order by the settlement time in seconds, the symbol, the user and the
        # side (its execution list's example: "1682553600-BTCUSDT-592334-Sell").
        execution = Execution(
            category=category, symbol=symbol, exec_id=payment.payment_id,
            order_id=f"{ms // 1000}-{symbol}-{user_id(account)}-{side}", order_link_id="",
            side=side, order_price=None,
            order_qty=ZERO, leaves_qty=ZERO, order_type="UNKNOWN", exec_type="Funding",
            exec_price=mark, exec_qty=size,
            exec_value=serializers.settle_value(instrument, size, mark) if mark else ZERO,
            exec_fee=-payment.amount, fee_rate=payment.rate, fee_currency="", is_maker=False,
            mark_price=mark, index_price=quote.index if quote else None, closed_size=ZERO, exec_ms=ms,
            seq=seq,
        )
        self._executions[account].append(execution)
        self._record(account, instrument, execution, "SETTLEMENT", cash_flow=ZERO, funding=payment.amount)
        self._push(account, "execution", [serializers.execution(execution, stream=True)])

    def _record(self, account: str, instrument: Instrument, e: Execution, entry_type: str, *,
                cash_flow: Decimal, funding: Decimal) -> None:
        fee = ZERO if entry_type == "SETTLEMENT" else e.exec_fee
        book = self._books.get((account, instrument.symbol), PositionBook())
        self._ledger[account].append(LedgerEntry(
            entry_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), category=e.category,
            symbol=e.symbol, side=e.side, time_ms=e.exec_ms, entry_type=entry_type, qty=e.exec_qty,
            size=book.contracts, currency=instrument.settle, trade_price=e.exec_price, funding=funding,
            fee=fee, cash_flow=cash_flow, change=cash_flow + funding - fee,
            cash_balance=self.engine.balances(account).get(instrument.settle, ZERO), fee_rate=e.fee_rate,
            trade_id=e.exec_id, order_id=e.order_id, order_link_id=e.order_link_id,
        ))

    def _on_snapshot(self, account: str, snapshot: AccountSnapshot) -> None:
        self._push(account, "wallet", [self.wallet_item(account)])
        held = {p.symbol: p for p in snapshot.positions}
        changed = []
        for (key, symbol), book in self._books.items():
            if key != account:
                continue
            position = held.get(symbol)
            is_option = self.engine.instruments[symbol].is_option
            option_mark = position.mark_price if position and is_option else ZERO
            signature = (position.contracts if position else ZERO,
                         position.entry_price if position else ZERO, book.cum_realised, option_mark)
            if self._pushed_positions.get((key, symbol)) != signature:
                self._pushed_positions[(key, symbol)] = signature
                changed.append(self.position_item(account, self.engine.instruments[symbol], position,
                                                  stream=True))
        if changed:
            self._push(account, "position", changed)

    # quotes

    def _on_quote(self, quote: Quote) -> None:
        ms = to_ms(quote.ts)
        self.stats[quote.symbol].on_price(ms, quote.mid)
        self.book_updates[quote.symbol] += 1
        interval = self.engine.instruments[quote.symbol].funding_interval_secs
        if interval:
            slot = math.floor(quote.ts.timestamp() / interval)
            last = self._funding_slots.get(quote.symbol)
            if last is None or slot > last:
                self._funding_slots[quote.symbol] = slot
                rate = quote.funding_rate
                if rate is None:
                    rate = self.engine.default_funding_rate
                if last is not None:
                    for boundary in range(last + 1, slot + 1):
                        boundary_ms = self.stamp_ms(datetime.fromtimestamp(boundary * interval, UTC))
                        self.funding_history[quote.symbol].append((boundary_ms, rate))
        for listener in self.quote_listeners:
            listener(quote)
