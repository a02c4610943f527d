"""The engine's order matching: a synthetic book around the last quote, sweeping it as a taker,
resting orders filling when a quote crosses them, and each fill's fee, balances and position."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.average_entry import fill_position, realised_pnl
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Fill, OrderStatus, Quote, Side
from deltakeeper.sim.engine_accounts import EngineAccounts
from deltakeeper.sim.engine_state import (
    BOOK_DEPTH,
    Book,
    SimAccount,
    SimOrder,
    SimPosition,
    crosses,
    to_wallet,
)

_BPS = Decimal(10_000)


class EngineMatching(EngineAccounts):
    """The synthetic book, and fills with their fees, balances and positions."""

    # the synthetic book

    def book(self, symbol: str, depth: int = BOOK_DEPTH) -> tuple[
        list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]
    ]:
        """(bids, asks), best first, as (price, size in contracts): a synthetic book around the last quote,
        a function of the quote alone. Empty before the first quote."""
        quote = self._quotes.get(symbol)
        if quote is None:
            return [], []
        instrument = self.instruments[symbol]
        return self._levels(instrument, quote.bid, -1, depth), self._levels(instrument, quote.ask, 1, depth)

    def _levels(self, instrument: Instrument, touch: Decimal, direction: int, depth: int) -> list[
        tuple[Decimal, Decimal]
    ]:
        exponent = touch.as_tuple().exponent
        unit = Decimal(1).scaleb(min(exponent, 0) if isinstance(exponent, int) else 0)
        increment = max(unit, (touch * self.depth_step_bps / _BPS).quantize(unit))
        levels = []
        for i in range(depth):
            price = touch + direction * i * increment
            if price <= 0:
                break
            coin = self.depth_level_usd * (i + 1) / price
            size = instrument.round_contracts(instrument.contracts_for_coin(coin, price), toward_zero=True)
            levels.append((price, max(size, instrument.lot_step_contracts)))
        return levels

    def _sweep(self, instrument: Instrument, quote: Quote, side: Side, amount: Decimal,
               limit: Decimal | None, book: Book | None = None) -> list[tuple[Decimal, Decimal]]:
        """The (price, contracts) a taker gets for `amount`, stopping at `limit`, from `book` when given.
        Without a limit the last level takes whatever is left, so a market order always fills whole."""
        touch = quote.ask if side is Side.BUY else quote.bid
        if book is not None:
            levels = book[0] if side is Side.SELL else book[1]
        elif self.walk_depth:
            levels = self._levels(instrument, touch, side.sign, BOOK_DEPTH)
        else:
            levels = [(touch, amount)]
        plan: list[tuple[Decimal, Decimal]] = []
        remaining = amount
        for i, (price, size) in enumerate(levels):
            if remaining == 0 or (limit is not None and (price - limit) * side.sign > 0):
                break
            take = remaining if i == len(levels) - 1 and limit is None else min(remaining, size)
            plan.append((price, take))
            remaining -= take
        return plan

    # fills

    def _match(self, instrument: Instrument, quote: Quote) -> None:
        for account_id, account in self._accounts.items():
            orders = [o for o in account.open_orders.values() if o.symbol == quote.symbol]
            traded = False
            for order in orders:
                if order.price is None:
                    for price, amount in self._sweep(instrument, quote, order.side, order.remaining, None):
                        if order.status.is_final:
                            break
                        traded |= self._execute(account_id, account, instrument, order, amount, price,
                                                quote.ts, maker=False)
                elif crosses(order.side, order.price, quote):
                    traded |= self._execute(account_id, account, instrument, order, order.remaining,
                                            order.price, quote.ts, maker=True)
                else:
                    continue
                if order.status is not OrderStatus.CANCELED:
                    self._emit(account_id, order.state())
            if traded:
                self._emit(account_id, self.snapshot(account_id, quote.ts))

    def _execute(self, account_id: str, account: SimAccount, instrument: Instrument, order: SimOrder,
                 amount: Decimal, price: Decimal, ts: datetime, *, maker: bool,
                 liquidation: bool = False) -> bool:
        """Fill up to `amount` of `order` at `price`. A reduce-only order fills at most the position it
        reduces, and is cancelled when nothing is left to reduce. Returns whether anything traded."""
        if order.reduce_only:
            pos = account.positions.get(order.symbol)
            held = pos.contracts if pos else ZERO
            reducible = abs(held) if held * order.side.sign < 0 else ZERO
            amount = min(amount, reducible)
            if amount == 0:
                order.reason = "reduce-only order has no position left to reduce"
                self._close(account_id, account, order, OrderStatus.CANCELED, ts)
                return False
        fee_rate = instrument.maker_fee_rate if maker else instrument.taker_fee_rate
        signed = order.side.sign * amount
        notional_usd = instrument.notional_usd(amount, price)
        if instrument.is_option:
            fee_currency = instrument.settle
            fee = self._option_fee(instrument, amount, price, fee_rate)
            premium = signed * instrument.contract_size * price
            self._apply_option_position(account, instrument, signed, price)
            self._credit(account, fee_currency, to_wallet(-premium) - fee)
            underlying = self._underlying(instrument) if instrument.coin_settled else Decimal(1)
            notional_usd = abs(premium) * (underlying or ZERO)
        elif instrument.is_derivative:
            fee_currency = instrument.settle
            fee = to_wallet(abs(self._settle_notional(instrument, amount, price)) * fee_rate)
            realised = self._apply_position(account, instrument, signed, price)
            self._credit(account, fee_currency, realised - fee)
        else:
            fee_currency = instrument.quote
            value = amount * price
            fee = to_wallet(value * fee_rate)
            self._credit(account, instrument.base, signed)
            self._credit(account, instrument.quote, -order.side.sign * value - fee)
        order.filled += amount
        order.cost += amount * price
        order.ts = ts
        fill = Fill(
            trade_id=self._new_id(), exchange_order_id=order.exchange_order_id,
            client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            amount_contracts=amount, price=price, fee=fee, fee_currency=fee_currency, ts=ts,
            notional_usd=notional_usd, is_maker=maker, liquidation=liquidation,
        )
        account.fills.append(fill)
        self._emit(account_id, fill)
        if order.remaining == 0:
            order.status = OrderStatus.FILLED
            self._closed(account, order)
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
            self._forget(account, ts)
        return True

    @staticmethod
    def _apply_option_position(account: SimAccount, instrument: Instrument, signed: Decimal,
                               price: Decimal) -> None:
        """Add a signed option fill to the position (arithmetic average entry). No realised PnL: the
        premium has moved the wallet."""
        pos = account.positions.setdefault(instrument.symbol, SimPosition())
        filled = fill_position(pos.contracts, pos.entry_price, signed, price, inverse=False)
        pos.contracts, pos.entry_price = filled.size, filled.entry
        if filled.size == 0:
            del account.positions[instrument.symbol]

    @staticmethod
    def _apply_position(account: SimAccount, instrument: Instrument, signed: Decimal,
                        price: Decimal) -> Decimal:
        """Add a signed fill to the position; return the realised PnL in the settle coin."""
        pos = account.positions.setdefault(instrument.symbol, SimPosition())
        entry = pos.entry_price
        filled = fill_position(pos.contracts, entry, signed, price, inverse=instrument.inverse)
        pos.contracts, pos.entry_price = filled.size, filled.entry
        if filled.size == 0:
            del account.positions[instrument.symbol]
        if filled.closed == 0:
            return ZERO
        closed = filled.closed * instrument.contract_size
        return to_wallet(realised_pnl(closed, entry, price, inverse=instrument.inverse))
