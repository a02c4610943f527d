"""Bybit's account records over the engine's events: each fill and funding payment becomes an execution
with its ids and a transaction-log entry, the position books keep Bybit's realised PnL, the engine's
liquidations appear as the liquidation engine's takeover orders, and positions, the wallet and their
private pushes are drawn from them."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Fill, FillKind, FundingPayment, OrderState, OrderType, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.bybit import options, serializers
from deltakeeper.sim.bybit.records import Execution, LedgerEntry, OrderMeta, PositionBook
from deltakeeper.sim.bybit.venue_state import VenueState
from deltakeeper.sim.venue_common import realised_pnl, to_ms

_LEDGER_TYPES = {FillKind.TRADE: "TRADE", FillKind.LIQUIDATION: "LIQUIDATION", FillKind.DELIVERY: "DELIVERY"}
"""The transaction log's `type` of a fill (Bybit's enum: DELIVERY for USDC futures' and options' delivery)."""


def _exec_type(instrument: Instrument, fill: Fill) -> str:
    """Bybit's `execType`: Trade; BustTrade for the liquidation engine's; at expiry Delivery ("USDC futures
    delivery"; options and USDT futures alike here), or Settle for an inverse future ("Inverse futures
    settlement")."""
    if fill.delivery:
        return "Settle" if instrument.inverse else "Delivery"
    return "BustTrade" if fill.liquidation else "Trade"


def _order_type(fill: Fill, state: OrderState | None) -> str:
    """A delivery has no order: its `orderType` is UNKNOWN, as a funding fee's."""
    if fill.delivery:
        return "UNKNOWN"
    return "Limit" if state and state.order_type is OrderType.LIMIT else "Market"


def _fee_rate(instrument: Instrument, fill: Fill) -> Decimal:
    """A delivery pays no fee (Bybit charges none on USDC futures' delivery)."""
    if fill.delivery:
        return ZERO
    return instrument.maker_fee_rate if fill.is_maker else instrument.taker_fee_rate


def user_id(account: str) -> int:
    """The Bybit user id of an API key's account (stable across runs)."""
    return int(hashlib.sha256(account.encode()).hexdigest()[8:15], 16)


class AccountBooks(VenueState):
    """Executions, the transaction log, position books, and the positions and wallet drawn from them."""

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

    # engine events

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _on_fill(self, account: str, fill: Fill) -> None:
        """An execution of the fill: of the account's order, of the liquidation engine's (a BustTrade), or
        of no order at all (an expired contract's Delivery, or Settle for an inverse future's: Bybit's
        `createType` CreateBySettle, "recorded as a trade but not an order")."""
        meta = self._meta.get(fill.exchange_order_id)
        if meta is None and fill.liquidation:
            meta = self._meta[fill.exchange_order_id] = self._takeover_order(fill)
        if meta is None and self._pending is not None and not fill.delivery:
            meta = self._meta[fill.exchange_order_id] = self._pending
        if meta is None and not fill.delivery:
            return
        instrument = self.engine.instruments[fill.symbol]
        category, symbol = self.ids[fill.symbol]
        value = serializers.settle_value(instrument, fill.amount_contracts, fill.price)
        ms = self.stamp_ms(fill.ts)
        seq = self._next_seq()
        closed, realised = ZERO, ZERO
        if instrument.is_derivative:
            closed, realised = self._on_position_fill(account, instrument, fill, ms, seq)
        if meta is not None:
            meta.cum_exec_value += value
            meta.cum_exec_fee += fill.fee
            meta.fee_currency = fill.fee_currency
            meta.closed_pnl += realised
        state = self.engine.order(account, exchange_order_id=fill.exchange_order_id)
        quote = self.engine.quote(fill.symbol)
        execution = Execution(
            category=category, symbol=symbol, exec_id=fill.trade_id, order_id=fill.exchange_order_id,
            order_link_id=meta.order_link_id if meta else "", side=serializers.side_name(fill.side.sign),
            order_price=state.price if state else None, order_qty=meta.qty if meta else fill.amount_contracts,
            leaves_qty=state.amount_contracts - state.filled_contracts if state else ZERO,
            order_type=_order_type(fill, state), exec_type=_exec_type(instrument, fill),
            exec_price=fill.price, exec_qty=fill.amount_contracts, exec_value=value, exec_fee=fill.fee,
            fee_rate=_fee_rate(instrument, fill),
            fee_currency=fill.fee_currency, is_maker=fill.is_maker,
            mark_price=quote.mark if quote else fill.price,
            index_price=quote.index if quote else None, closed_size=closed, exec_ms=ms, seq=seq,
        )
        self._executions[account].append(execution)
        if fill.traded:
            self.stats[fill.symbol].on_trade(to_ms(fill.ts), fill.amount_contracts, value)
        if instrument.is_derivative:
            self._record(account, instrument, execution, _LEDGER_TYPES[fill.kind], cash_flow=realised,
                         funding=ZERO)
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

