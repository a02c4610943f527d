"""The simulated exchange's engine: accounts, balances, order matching against a quote stream, fees,
positions and funding (DESIGN.md 8). Synchronous and clock-free: time is an argument or a quote's `ts`.
This module takes quotes and orders; the rest lives in `engine_state` (what is kept), `engine_accounts`
(accounts, positions, shared helpers), `engine_matching` (book and fills) and `engine_settlement`
(liquidation, expiry, funding).

Rules, kept simple on purpose:
- Market orders take liquidity at once: buys at the ask, sells at the bid, walking a synthetic book
  (`book()`) when `walk_depth` is on and the size exceeds the touch (or the book `place_order` is given).
  A limit order that crosses the quote takes the same way up to its price (taker fee), and the rest rests;
  a resting limit order fills whole at its own price when a later quote crosses it (maker fee). A
  post-only order that would take is rejected.
- Fees: derivatives pay in the settle coin (linear: contracts x size x price x rate; inverse:
  contracts x face / price x rate); spot pays in the quote currency. Wallet amounts (fees, realised PnL,
  funding) are rounded to 8 decimals, like the exchanges' wallets.
- Positions: signed contracts with an average entry (arithmetic for linear, harmonic for inverse).
  Reducing a position credits the realised PnL to the settle coin's wallet (linear:
  contracts x size x (exit - entry); inverse: face x (1/entry - 1/exit)). Unrealised PnL is at the mark.
- Funds: a spot order needs the free balance (wallet less what open orders reserve) to cover it, fee
  included. A derivative order that makes its position bigger needs the settle coin's wallet to cover
  the initial margin (`domain.margin.leg_requirements`: futures notional / `leverage` at the mark, short
  options Deribit's standard margin) of every position in that coin after the order, plus the taker fee
  (and a bought option's premium; a sold one's counts toward it). Open derivative orders reserve nothing;
  unrealised PnL does not count as initial margin.
- Liquidation (the engine's own rule, with `liquidations` on): after every derivative quote, each
  settlement currency's margin balance (wallet + futures' unrealised PnL at the marks) is compared with
  its maintenance margin (`leg_requirements`: the tiered table `maintenance_tiers` on the USD notional,
  REFERENCE 3.1; short options 0.075 + mark per coin). Below it, the position with the largest
  maintenance margin is closed at its mark by a reduce-only market order of the exchange's own (no client
  id), taker fee paid, its fill marked `liquidation`, and so on until the balance covers the rest. A
  wallet left negative is reset to zero (the insurance fund takes the loss). Positions report these
  figures (`Position.initial_margin`, `maintenance_margin`, `leverage`, `liquidation_price`) as an
  exchange does.
- Options (coin-settled, Deribit-style, or settled in a stablecoin, Bybit's USDC options): the premium
  changes hands in the settle coin at the trade (contracts x size x price), the fee is `rate` x size (in
  USD at the underlying's price for a stablecoin-settled one) capped at 12.5% of the premium, positions
  carry an average entry and no realised PnL of their own (the premium already moved the wallet), no
  funding. An option quote's `index` is its underlying price; with a `mark_iv` (an `OptionQuote` of the
  feeds) the position reports that vol and its Black-76 delta, as Deribit publishes greeks, and every
  quote of a held option pushes a fresh account snapshot (Deribit's portfolio channel). At expiry (on the
  first quote of the same underlying at or after it) positions settle in their settle coin at their
  intrinsic value on the underlying price and open orders on it are cancelled; orders on an expired
  option are rejected.
- Dated futures (`Kind.FUTURE`, Bybit-style quarterlies) trade as perpetuals do, without funding, and
  expire as options do: on the first quote of the underlying at or after expiry their open orders are
  cancelled and positions closed at the underlying price (the last quote's index of a market without
  expiry), the PnL realised into the settle coin's wallet as a reduction would (no fee); later orders are
  rejected. No fill is reported for the settlement, as for an option's: the wallet and position change
  in the account snapshot.
- Funding settles when a quote's ts crosses a multiple of the instrument's funding interval (counted
  from the epoch): payment = -position notional x rate (positive = received), linear notional
  contracts x size x mark in the settle coin, inverse face / mark in coin, at the crossing quote's mark
  and funding rate (or `default_funding_rate`), stamped at the boundary. With `funding_on_grid` off only
  `settle_funding` settles it, at a time given (paper trading: the times a venue announces).
- Ids for orders, trades and funding payments are UUID-4 strings drawn from `random.Random(seed)`.
- History: like an exchange, the engine answers for recent history only. Open orders are always kept;
  closed orders, fills and funding payments are forgotten once older than `history_secs` (by the time of
  the newest one) or beyond the newest `history_max` of each kind in the account (`order`, `orders`,
  `fills` and `funding_payments` then no longer return them), so that its memory stays bounded however
  long it runs.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.errors import OrderRejected
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
from deltakeeper.sim.engine_settlement import EngineSettlement
from deltakeeper.sim.engine_state import WALLET_QUANTUM, Book, SimAccount, SimOrder, crosses

__all__ = ["WALLET_QUANTUM", "SimEngine"]  # the wallets' rounding, for the venues built on the engine


class SimEngine(EngineSettlement):
    """The simulated exchange: quotes in, orders placed and cancelled, account events out."""

    # market data

    def on_quote(self, quote: Quote) -> None:
        """A new top of book: settle funding if the quote crossed a funding time, then match orders."""
        instrument = self.instruments.get(quote.symbol)
        if instrument is None:
            raise KeyError(f"quote for unknown market {quote.symbol!r}")
        self._quotes[quote.symbol] = quote
        for listener in self._quote_listeners:
            listener(quote)
        if instrument.funding_interval_secs and self.funding_on_grid:
            self._settle_funding(instrument, quote, instrument.funding_interval_secs)
        self._match(instrument, quote)
        if self._expiries and self._expiries[0][0] <= quote.ts:
            self._settle_expiries(instrument.base, quote.ts)
        if instrument.is_derivative and self.liquidations:
            self._check_liquidations(instrument.settle, quote.ts)
        if instrument.is_option:  # the account's greeks moved: push them, as Deribit's portfolio channel does
            for account_id, account in self._accounts.items():
                if quote.symbol in account.positions:
                    self._emit(account_id, self.snapshot(account_id, quote.ts))

    # orders

    def place_order(self, account_id: str, request: OrderRequest, now: datetime,
                    book: Book | None = None) -> OrderState:
        """Accept an order, filling what is marketable now (against `book`, (bids, asks) best first in
        contracts, when given: another venue's live book). Raises OrderRejected with the reason."""
        account = self._account(account_id)
        instrument = self.instruments.get(request.symbol)
        if instrument is None:
            raise OrderRejected(f"unknown market {request.symbol}")
        if request.symbol in self._expired or (instrument.expiry is not None and instrument.expiry <= now):
            raise OrderRejected(f"{request.symbol} has expired")
        self._validate(account, instrument, request)
        if self.faults.reject_insufficient_balance:
            raise OrderRejected("insufficient balance")
        quote = self._quotes.get(request.symbol)
        amount = request.amount_contracts
        limit = request.price if request.order_type is OrderType.LIMIT else None
        sweep: list[tuple[Decimal, Decimal]] | None = None  # a market order's whole sweep, built once
        if limit is not None:
            reserve_price = limit
        elif quote is not None:
            sweep = self._sweep(instrument, quote, request.side, amount, None, book)
            reserve_price = sweep[-1][0]
        else:
            raise OrderRejected(f"no price for {request.symbol} yet")
        if request.reduce_only:
            self._check_reduces(account, request)
        marketable = quote is not None and (limit is None or crosses(request.side, limit, quote))
        if request.post_only and marketable:
            raise OrderRejected("post-only order would take liquidity")
        take_now = amount
        fraction = self.faults.partial_fill_fraction
        if limit is None and self.faults.delay_market_fills:
            take_now = ZERO
        elif limit is None and fraction is not None:
            take_now = instrument.round_contracts(amount * fraction, toward_zero=True)
        if sweep is not None and take_now == amount:
            plan = sweep
        else:
            plan = (self._sweep(instrument, quote, request.side, take_now, limit, book)
                    if quote and marketable else [])
        self._check_notional(instrument, amount, reserve_price)
        self._check_funds(account, instrument, request, reserve_price)

        order = SimOrder(
            exchange_order_id=self._new_id(), client_order_id=request.client_order_id or None,
            symbol=request.symbol, side=request.side, amount=amount,
            order_type=request.order_type, price=limit, reduce_only=request.reduce_only,
            reserve_price=reserve_price, ts=now,
        )
        account.open_orders[order.exchange_order_id] = order
        account.by_exchange_id[order.exchange_order_id] = order
        if order.client_order_id:
            account.by_client_id[order.client_order_id] = order
        for fill_price, fill_amount in plan:
            self._execute(account_id, account, instrument, order, fill_amount, fill_price, now, maker=False)
        self._emit(account_id, order.state())
        if order.filled:
            self._emit(account_id, self.snapshot(account_id, now))
        return order.state()

    def cancel_order(self, account_id: str, symbol: str, now: datetime, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> OrderState:
        order = self._find(self._account(account_id), client_order_id, exchange_order_id)
        if order is None or order.symbol != symbol:
            raise OrderRejected(f"unknown order {client_order_id or exchange_order_id} on {symbol}")
        if order.status.is_final:
            raise OrderRejected(f"order {order.exchange_order_id} is already {order.status.value}")
        self._close(account_id, self._account(account_id), order, OrderStatus.CANCELED, now)
        return order.state()

    def cancel_all(self, account_id: str, symbol: str | None, now: datetime) -> list[OrderState]:
        account = self._account(account_id)
        cancelled = []
        for order in list(account.open_orders.values()):
            if symbol is None or order.symbol == symbol:
                self._close(account_id, account, order, OrderStatus.CANCELED, now)
                cancelled.append(order.state())
        return cancelled

    def open_orders(self, account_id: str, symbol: str | None = None) -> list[OrderState]:
        return [o.state() for o in self._account(account_id).open_orders.values()
                if symbol is None or o.symbol == symbol]

    def order(self, account_id: str, *, client_order_id: str | None = None,
              exchange_order_id: str | None = None) -> OrderState | None:
        """The order with this exchange id, or the latest with this client id."""
        order = self._find(self._account(account_id), client_order_id, exchange_order_id)
        return order.state() if order else None

    def orders(self, account_id: str) -> list[OrderState]:
        """The open orders and the closed ones still kept, oldest first (rejected requests are not kept)."""
        return [o.state() for o in self._account(account_id).by_exchange_id.values()]

    def fills(self, account_id: str, since: datetime | None = None) -> list[Fill]:
        return [f for f in self._account(account_id).fills if since is None or f.ts >= since]

    def funding_payments(self, account_id: str, since: datetime | None = None) -> list[FundingPayment]:
        return [p for p in self._account(account_id).funding if since is None or p.ts >= since]

    # order checks

    @staticmethod
    def _find(account: SimAccount, client_order_id: str | None,
              exchange_order_id: str | None) -> SimOrder | None:
        if exchange_order_id is not None:
            return account.by_exchange_id.get(exchange_order_id)
        if client_order_id is not None:
            return account.by_client_id.get(client_order_id)
        raise ValueError("give a client or an exchange order id")

    @staticmethod
    def _validate(account: SimAccount, instrument: Instrument, request: OrderRequest) -> None:
        amount = request.amount_contracts
        if amount <= 0:
            raise OrderRejected(f"amount must be positive, got {amount}")
        step = instrument.lot_step_contracts
        if amount % step != 0:
            raise OrderRejected(f"amount {amount} is not a multiple of the lot step {step}")
        if amount < instrument.min_contracts:
            raise OrderRejected(f"amount {amount} is below the minimum {instrument.min_contracts}")
        if request.order_type is OrderType.LIMIT and (request.price is None or request.price <= 0):
            raise OrderRejected("a limit order needs a positive price")
        if request.order_type is OrderType.MARKET and request.post_only:
            raise OrderRejected("a market order cannot be post-only")
        if request.reduce_only and not instrument.is_derivative:
            raise OrderRejected("reduce-only is for derivatives")
        existing = account.by_client_id.get(request.client_order_id)
        if existing is not None and not existing.status.is_final:
            raise OrderRejected(f"duplicate client order id {request.client_order_id}")

    @staticmethod
    def _check_reduces(account: SimAccount, request: OrderRequest) -> None:
        pos = account.positions.get(request.symbol)
        held = pos.contracts if pos else ZERO
        if held == 0 or (held > 0) == (request.side is Side.BUY):
            raise OrderRejected("reduce-only order would increase the position")
        if request.amount_contracts > abs(held):
            raise OrderRejected(f"reduce-only amount {request.amount_contracts} exceeds the position {held}")

    @staticmethod
    def _check_notional(instrument: Instrument, amount: Decimal, price: Decimal) -> None:
        notional = instrument.notional_usd(amount, price)
        if notional < instrument.min_notional_usd:
            raise OrderRejected(f"notional {notional} is below the minimum {instrument.min_notional_usd}")

    def _check_funds(self, account: SimAccount, instrument: Instrument, request: OrderRequest,
                     price: Decimal) -> None:
        amount = request.amount_contracts
        if not instrument.is_derivative:
            if request.side is Side.BUY:
                asset, needed = instrument.quote, amount * price * (1 + instrument.taker_fee_rate)
            else:
                asset, needed = instrument.base, amount
            free = account.balances.get(asset, ZERO) - self._reserved(account, asset)
            if free < needed:
                raise OrderRejected(f"insufficient balance: {asset} {free} free, {needed} needed")
            return
        pos = account.positions.get(request.symbol)
        held = pos.contracts if pos else ZERO
        after = held + request.side.sign * amount
        if abs(after) <= abs(held):
            return
        settle = instrument.settle
        required = self._initial_margin(instrument, after, price)
        if instrument.is_option:
            premium = amount * instrument.contract_size * price
            required += self._option_fee(instrument, amount, price, instrument.taker_fee_rate)
            required += premium if request.side is Side.BUY else -premium
        else:
            required += instrument.taker_fee_rate * self._settle_notional(instrument, amount, price)
        for symbol, other in account.positions.items():
            other_instrument = self.instruments[symbol]
            if symbol != request.symbol and other_instrument.settle == settle:
                quote = self._quotes.get(symbol)
                mark = quote.mark if quote else other.entry_price
                required += self._initial_margin(other_instrument, other.contracts, mark)
        wallet = account.balances.get(settle, ZERO)
        if wallet < required:
            raise OrderRejected(f"insufficient margin: {settle} {wallet} in the wallet, {required} needed")

    def _reserved(self, account: SimAccount, asset: str) -> Decimal:
        """What open spot orders hold back of `asset`: a buy its cost and taker fee, a sell its amount."""
        total = ZERO
        for order in account.open_orders.values():
            instrument = self.instruments[order.symbol]
            if instrument.is_derivative:
                continue
            if order.side is Side.BUY and instrument.quote == asset:
                total += order.remaining * order.reserve_price * (1 + instrument.taker_fee_rate)
            elif order.side is Side.SELL and instrument.base == asset:
                total += order.remaining
        return total
