"""The simulated exchange's engine: accounts, balances, order matching against a quote stream, fees,
positions and funding (DESIGN.md 8). Synchronous and clock-free: time is an argument or a quote's `ts`.

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

import itertools
import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from deltakeeper.domain.average_entry import fill_position, realised_pnl
from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.exposure import Position, unrealized_pnl, years_to_expiry
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.margin import MarginRules, account_margin, leg_requirements
from deltakeeper.domain.margin_tiers import DEFAULT_TIERS_USD
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
from deltakeeper.sim.markets import OPTION_FEE_CAP

BOOK_DEPTH = 25
HISTORY_SECS = 7 * 86_400
"""How long closed orders, fills and funding payments stay answerable: the bot asks for at most a week back
(its first backfill, `app.reconciliation.FIRST_BACKFILL`), and for less once it has a cursor."""
HISTORY_MAX = 1_000
"""At most this many closed orders, fills and funding payments (each) are kept per account."""
WALLET_QUANTUM = Decimal("1E-8")
_BPS = Decimal(10_000)

AccountListener = Callable[[str, AccountEvent], None]
Book = tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]
"""(bids, asks), best first, as (price, size in contracts)."""
QuoteListener = Callable[[Quote], None]


@dataclass
class Faults:
    """Fault injection, read at order placement. Plain attributes: set them at any time."""

    partial_fill_fraction: Decimal | None = None
    """A market order fills this fraction now (rounded down to the lot step); the rest on the next quote."""
    delay_market_fills: bool = False
    """Market orders rest, and fill at the next quote of their symbol."""
    reject_insufficient_balance: bool = False
    """Every new order is rejected for insufficient balance."""


@dataclass
class _Order:
    exchange_order_id: str
    client_order_id: str | None
    symbol: str
    side: Side
    amount: Decimal
    order_type: OrderType
    price: Decimal | None
    reduce_only: bool
    reserve_price: Decimal
    """The worst price the order can fill at, as estimated on placement: what a spot order reserves."""
    ts: datetime
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    status: OrderStatus = OrderStatus.OPEN
    reason: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    def state(self) -> OrderState:
        return OrderState(
            client_order_id=self.client_order_id, exchange_order_id=self.exchange_order_id,
            symbol=self.symbol, side=self.side, amount_contracts=self.amount, filled_contracts=self.filled,
            status=self.status, ts=self.ts, average_price=self.cost / self.filled if self.filled else None,
            order_type=self.order_type, price=self.price, reject_reason=self.reason,
        )


@dataclass
class _Position:
    contracts: Decimal = ZERO
    entry_price: Decimal = ZERO


@dataclass
class _Account:
    balances: dict[str, Decimal]
    positions: dict[str, _Position] = field(default_factory=dict)
    open_orders: dict[str, _Order] = field(default_factory=dict)
    by_exchange_id: dict[str, _Order] = field(default_factory=dict)
    """Every order kept (open, or closed and not forgotten yet), oldest first."""
    by_client_id: dict[str, _Order] = field(default_factory=dict)
    """The latest order kept with each client id."""
    closed: deque[_Order] = field(default_factory=deque)
    """The closed orders kept, in the order they closed."""
    fills: deque[Fill] = field(default_factory=deque)
    funding: deque[FundingPayment] = field(default_factory=deque)


def _wallet(amount: Decimal) -> Decimal:
    return amount.quantize(WALLET_QUANTUM)


def _crosses(side: Side, limit: Decimal, quote: Quote) -> bool:
    """A buy at `limit` meets the ask, a sell meets the bid."""
    return limit >= quote.ask if side is Side.BUY else limit <= quote.bid


class SimEngine:
    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        seed: int = 0,
        default_funding_rate: Decimal = Decimal("0.0001"),
        history_secs: float = HISTORY_SECS,
        history_max: int = HISTORY_MAX,
    ) -> None:
        if history_secs < 0 or history_max < 1:
            raise ValueError(f"history must be kept: history_secs={history_secs}, history_max={history_max}")
        self.instruments: dict[str, Instrument] = dict(instruments)
        self._history = timedelta(seconds=history_secs)
        self._history_max = history_max
        self.default_funding_rate = default_funding_rate
        self.faults = Faults()
        self.leverage = Decimal(10)
        self.maintenance_tiers = DEFAULT_TIERS_USD
        """The maintenance margin table (USD notional) of every futures market."""
        self.liquidations = True
        """Liquidate a settlement currency whose margin balance falls below its maintenance margin."""
        self.funding_on_grid = True
        """Settle funding on each perpetual's interval grid; off, only `settle_funding` settles it."""
        self._margin_rules: MarginRules | None = None
        self.walk_depth = True
        self.depth_level_usd = Decimal(50_000)
        """Level i of the synthetic book (0 = the touch) holds (i + 1) x this much, in USD."""
        self.depth_step_bps = Decimal(1)
        """Distance between the synthetic book's levels, in bps of the touch (at least one price unit)."""
        self._rng = random.Random(seed)
        self._accounts: dict[str, _Account] = {}
        self._quotes: dict[str, Quote] = {}
        self._funding_slots: dict[str, int] = {}
        self._listeners: list[AccountListener] = []
        self._quote_listeners: list[QuoteListener] = []
        self._expiries = sorted(
            (i.expiry, i.symbol) for i in self.instruments.values()
            if i.is_derivative and i.expiry is not None
        )
        self._expired: set[str] = set()
        self._snapshots = itertools.count(1)
        """Numbers the snapshots in the order they are taken (`AccountSnapshot.seq`)."""

    # accounts

    def open_account(self, account_id: str, balances: Mapping[str, Decimal]) -> None:
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} exists")
        self._accounts[account_id] = _Account(balances=dict(balances))

    def has_account(self, account_id: str) -> bool:
        return account_id in self._accounts

    def balances(self, account_id: str) -> dict[str, Decimal]:
        return dict(self._account(account_id).balances)

    def positions(self, account_id: str) -> list[Position]:
        """Open positions at the mark, with their margin figures (the engine's rule) as an exchange
        reports them, and an option's mark IV, Black-76 delta and underlying price."""
        account = self._account(account_id)
        result = [self._position(symbol, pos) for symbol, pos in account.positions.items()]
        if not result:
            return result
        margin = account_margin(self.instruments, account.balances, result, {}, self._rules())
        reported = []
        for position in result:
            leg = margin.leg(position.symbol)
            if leg is None:
                reported.append(position)
                continue
            liquidation = leg.liquidation_price
            reported.append(replace(
                position,
                initial_margin=_wallet(leg.initial_margin),
                maintenance_margin=_wallet(leg.maintenance_margin),
                leverage=leg.leverage,
                liquidation_price=None if liquidation is None else liquidation.quantize(WALLET_QUANTUM),
            ))
        return reported

    def _position(self, symbol: str, pos: _Position) -> Position:
        instrument = self.instruments[symbol]
        quote = self._quotes.get(symbol)
        mark = quote.mark if quote else pos.entry_price
        position = Position(symbol, pos.contracts, pos.entry_price, mark)
        upnl = _wallet(unrealized_pnl(instrument, position))
        position = replace(position, unrealized_pnl=upnl)
        vol = getattr(quote, "mark_iv", None)
        if (instrument.is_option and quote is not None and quote.index and vol
                and instrument.strike is not None and instrument.expiry is not None):
            model = greeks(float(quote.index), float(instrument.strike),
                           years_to_expiry(instrument.expiry, quote.ts), vol, instrument.is_call)
            position = replace(position, delta=Decimal(repr(model.delta)), mark_iv=vol,
                               underlying_price=quote.index)
        return position

    def snapshot(self, account_id: str, now: datetime) -> AccountSnapshot:
        return AccountSnapshot(
            self.balances(account_id), tuple(self.positions(account_id)), now, next(self._snapshots)
        )

    def adjust_balance(self, account_id: str, asset: str, amount: Decimal, now: datetime) -> None:
        """An external flow (deposit, withdrawal, a scenario's inventory change)."""
        balances = self._account(account_id).balances
        balances[asset] = balances.get(asset, ZERO) + amount
        self._emit(account_id, self.snapshot(account_id, now))

    def subscribe(self, listener: AccountListener) -> None:
        """`listener(account_id, event)` for every fill, funding payment, order change, and a snapshot
        after each change of balances or positions."""
        self._listeners.append(listener)

    def subscribe_quotes(self, listener: QuoteListener) -> None:
        self._quote_listeners.append(listener)

    # market data

    def quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

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
        if limit is not None:
            reserve_price = limit
        elif quote is not None:
            reserve_price = self._sweep(instrument, quote, request.side, amount, None, book)[-1][0]
        else:
            raise OrderRejected(f"no price for {request.symbol} yet")
        if request.reduce_only:
            self._check_reduces(account, request)
        marketable = quote is not None and (limit is None or _crosses(request.side, limit, quote))
        if request.post_only and marketable:
            raise OrderRejected("post-only order would take liquidity")
        take_now = amount
        fraction = self.faults.partial_fill_fraction
        if limit is None and self.faults.delay_market_fills:
            take_now = ZERO
        elif limit is None and fraction is not None:
            take_now = instrument.round_contracts(amount * fraction, toward_zero=True)
        plan = (self._sweep(instrument, quote, request.side, take_now, limit, book)
                if quote and marketable else [])
        self._check_notional(instrument, amount, reserve_price)
        self._check_funds(account, instrument, request, reserve_price)

        order = _Order(
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

    # internals

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise KeyError(f"unknown account {account_id!r}")
        return account

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _emit(self, account_id: str, event: AccountEvent) -> None:
        for listener in self._listeners:
            listener(account_id, event)

    @staticmethod
    def _find(account: _Account, client_order_id: str | None, exchange_order_id: str | None) -> _Order | None:
        if exchange_order_id is not None:
            return account.by_exchange_id.get(exchange_order_id)
        if client_order_id is not None:
            return account.by_client_id.get(client_order_id)
        raise ValueError("give a client or an exchange order id")

    @staticmethod
    def _validate(account: _Account, instrument: Instrument, request: OrderRequest) -> None:
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
    def _check_reduces(account: _Account, request: OrderRequest) -> None:
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

    def _check_funds(self, account: _Account, instrument: Instrument, request: OrderRequest,
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

    def _reserved(self, account: _Account, asset: str) -> Decimal:
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

    @staticmethod
    def _settle_notional(instrument: Instrument, contracts: Decimal, price: Decimal) -> Decimal:
        """Signed notional in the settle coin: linear contracts x size x price, inverse face / price."""
        if instrument.inverse:
            return contracts * instrument.contract_size / price
        return contracts * instrument.contract_size * price

    def _rules(self) -> MarginRules:
        rules = self._margin_rules
        tiers = self.maintenance_tiers
        if rules is None or rules.leverage != self.leverage or rules.default_tiers is not tiers:
            rules = self._margin_rules = MarginRules(default_tiers=tiers, leverage=self.leverage)
        return rules

    def _initial_margin(self, instrument: Instrument, contracts: Decimal, price: Decimal) -> Decimal:
        try:
            underlying = self._underlying(instrument)
            return leg_requirements(instrument, contracts, price, underlying, self._rules())[0]
        except ValueError:  # an option whose underlying has no price yet
            return ZERO

    def _underlying(self, instrument: Instrument) -> Decimal | None:
        """The USD price of an option's underlying: its own quote's index, else a quote of its base."""
        if not instrument.is_option:
            return None
        own = self._quotes.get(instrument.symbol)
        if own is not None and own.index:
            return own.index
        return self._price_of(instrument.base)

    def _price_of(self, base: str) -> Decimal | None:
        for symbol, quote in self._quotes.items():
            other = self.instruments[symbol]
            if other.base == base and other.expiry is None:
                return quote.index or quote.mark
        return None

    def _option_fee(self, instrument: Instrument, amount: Decimal, price: Decimal, rate: Decimal) -> Decimal:
        """`rate` of the underlying's value (in coin for a coin-settled option, else at its USD price),
        capped at `OPTION_FEE_CAP` of the premium."""
        size = amount * instrument.contract_size
        per_coin = Decimal(1) if instrument.coin_settled else self._underlying(instrument) or ZERO
        return _wallet(min(rate * size * per_coin, OPTION_FEE_CAP * size * price))

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
                elif _crosses(order.side, order.price, quote):
                    traded |= self._execute(account_id, account, instrument, order, order.remaining,
                                            order.price, quote.ts, maker=True)
                else:
                    continue
                if order.status is not OrderStatus.CANCELED:
                    self._emit(account_id, order.state())
            if traded:
                self._emit(account_id, self.snapshot(account_id, quote.ts))

    def _execute(self, account_id: str, account: _Account, instrument: Instrument, order: _Order,
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
            self._credit(account, fee_currency, _wallet(-premium) - fee)
            underlying = self._underlying(instrument) if instrument.coin_settled else Decimal(1)
            notional_usd = abs(premium) * (underlying or ZERO)
        elif instrument.is_derivative:
            fee_currency = instrument.settle
            fee = _wallet(abs(self._settle_notional(instrument, amount, price)) * fee_rate)
            realised = self._apply_position(account, instrument, signed, price)
            self._credit(account, fee_currency, realised - fee)
        else:
            fee_currency = instrument.quote
            value = amount * price
            fee = _wallet(value * fee_rate)
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

    def _close(self, account_id: str, account: _Account, order: _Order, status: OrderStatus,
               ts: datetime) -> None:
        order.status = status
        order.ts = ts
        self._closed(account, order)
        self._emit(account_id, order.state())

    def _closed(self, account: _Account, order: _Order) -> None:
        """Move a final order from the open ones to the history."""
        del account.open_orders[order.exchange_order_id]
        account.closed.append(order)
        self._forget(account, order.ts)

    def _forget(self, account: _Account, now: datetime) -> None:
        """Drop the closed orders, fills and funding payments beyond the history kept (oldest first)."""
        horizon = now - self._history
        limit = self._history_max
        closed = account.closed
        while closed and (len(closed) > limit or closed[0].ts < horizon):
            order = closed.popleft()
            del account.by_exchange_id[order.exchange_order_id]
            cid = order.client_order_id
            if cid is not None and account.by_client_id.get(cid) is order:
                del account.by_client_id[cid]
        for events in (account.fills, account.funding):
            while events and (len(events) > limit or events[0].ts < horizon):
                events.popleft()

    @staticmethod
    def _credit(account: _Account, asset: str, amount: Decimal) -> None:
        account.balances[asset] = account.balances.get(asset, ZERO) + amount

    @staticmethod
    def _apply_option_position(account: _Account, instrument: Instrument, signed: Decimal,
                               price: Decimal) -> None:
        """Add a signed option fill to the position (arithmetic average entry). No realised PnL: the
        premium has moved the wallet."""
        pos = account.positions.setdefault(instrument.symbol, _Position())
        filled = fill_position(pos.contracts, pos.entry_price, signed, price, inverse=False)
        pos.contracts, pos.entry_price = filled.size, filled.entry
        if filled.size == 0:
            del account.positions[instrument.symbol]

    # liquidation and expiry

    def _mark(self, symbol: str, pos: _Position) -> Decimal:
        quote = self._quotes.get(symbol)
        return quote.mark if quote else pos.entry_price

    def _pool(self, account: _Account, settle: str) -> tuple[Decimal, dict[str, Decimal]]:
        """A settlement currency's margin balance at the marks, and each of its positions' maintenance
        margin."""
        rules = self._rules()
        equity = account.balances.get(settle, ZERO)
        margins: dict[str, Decimal] = {}
        for symbol, pos in account.positions.items():
            instrument = self.instruments[symbol]
            if instrument.settle != settle:
                continue
            mark = self._mark(symbol, pos)
            if not instrument.is_option:
                equity += unrealized_pnl(instrument, Position(symbol, pos.contracts, pos.entry_price, mark))
            try:
                underlying = self._underlying(instrument)
                margins[symbol] = leg_requirements(instrument, pos.contracts, mark, underlying, rules)[1]
            except ValueError:
                margins[symbol] = ZERO
        return equity, margins

    def _surely_solvent(self, account: _Account, settle: str) -> bool:
        """A cheap bound checked first on every quote: the wallet alone covers each futures position's
        largest loss (at most its notional at the higher of entry and mark) plus its maintenance margin
        (at most its notional at the mark). Options always take the full check."""
        need = ZERO
        for symbol, pos in account.positions.items():
            instrument = self.instruments[symbol]
            if instrument.settle != settle:
                continue
            if instrument.is_option:
                return False
            mark = self._mark(symbol, pos)
            if instrument.inverse:
                face = abs(pos.contracts) * instrument.contract_size
                need += face / min(mark, pos.entry_price) + face / mark
            else:
                size = abs(pos.contracts) * instrument.contract_size
                need += size * (max(mark, pos.entry_price) + mark)
        return account.balances.get(settle, ZERO) >= need

    def _check_liquidations(self, settle: str, ts: datetime) -> None:
        for account_id, account in self._accounts.items():
            if not any(self.instruments[s].settle == settle for s in account.positions):
                continue
            if self._surely_solvent(account, settle):
                continue
            equity, margins = self._pool(account, settle)
            if equity >= sum(margins.values(), ZERO):
                continue
            while margins and equity < sum(margins.values(), ZERO):
                self._liquidate(account_id, account, max(margins, key=lambda s: margins[s]), ts)
                equity, margins = self._pool(account, settle)
            if account.balances.get(settle, ZERO) < 0:
                account.balances[settle] = ZERO
            self._emit(account_id, self.snapshot(account_id, ts))

    def _liquidate(self, account_id: str, account: _Account, symbol: str, ts: datetime) -> None:
        """Close the position at its mark with an order of the exchange's own."""
        pos = account.positions[symbol]
        mark = self._mark(symbol, pos)
        side = Side.SELL if pos.contracts > 0 else Side.BUY
        order = _Order(
            exchange_order_id=self._new_id(), client_order_id=None, symbol=symbol, side=side,
            amount=abs(pos.contracts), order_type=OrderType.MARKET, price=None, reduce_only=True,
            reserve_price=mark, ts=ts, reason="liquidation",
        )
        account.open_orders[order.exchange_order_id] = order
        account.by_exchange_id[order.exchange_order_id] = order
        self._execute(account_id, account, self.instruments[symbol], order, order.amount, mark, ts,
                      maker=False, liquidation=True)
        self._emit(account_id, order.state())

    def _settle_expiries(self, base: str, ts: datetime) -> None:
        """Settle the options and futures on `base` that have expired by `ts`: options at their intrinsic
        value, futures by closing them at the underlying price."""
        due = [(e, s) for e, s in self._expiries if e <= ts and self.instruments[s].base == base]
        if not due:
            return
        underlying = self._price_of(base)
        if underlying is None:
            return
        self._expiries = [item for item in self._expiries if item not in due]
        for _, symbol in due:
            instrument = self.instruments[symbol]
            self._expired.add(symbol)
            strike = instrument.strike or ZERO
            payoff = max(underlying - strike, ZERO) if instrument.is_call else max(strike - underlying, ZERO)
            if instrument.coin_settled:
                payoff /= underlying
            for account_id, account in self._accounts.items():
                for order in [o for o in account.open_orders.values() if o.symbol == symbol]:
                    order.reason = "expired"
                    self._close(account_id, account, order, OrderStatus.CANCELED, ts)
                pos = account.positions.get(symbol)
                if pos is None:
                    continue
                if instrument.is_option:
                    del account.positions[symbol]
                    paid = _wallet(pos.contracts * instrument.contract_size * payoff)
                else:  # a future: closed at the underlying price, its PnL realised
                    paid = self._apply_position(account, instrument, -pos.contracts, underlying)
                self._credit(account, instrument.settle, paid)
                self._emit(account_id, self.snapshot(account_id, ts))

    @staticmethod
    def _apply_position(account: _Account, instrument: Instrument, signed: Decimal,
                        price: Decimal) -> Decimal:
        """Add a signed fill to the position; return the realised PnL in the settle coin."""
        pos = account.positions.setdefault(instrument.symbol, _Position())
        entry = pos.entry_price
        filled = fill_position(pos.contracts, entry, signed, price, inverse=instrument.inverse)
        pos.contracts, pos.entry_price = filled.size, filled.entry
        if filled.size == 0:
            del account.positions[instrument.symbol]
        if filled.closed == 0:
            return ZERO
        closed = filled.closed * instrument.contract_size
        return _wallet(realised_pnl(closed, entry, price, inverse=instrument.inverse))

    def _settle_funding(self, instrument: Instrument, quote: Quote, interval_secs: int) -> None:
        slot = math.floor(quote.ts.timestamp() / interval_secs)
        last = self._funding_slots.get(instrument.symbol)
        if last is not None and slot <= last:
            return
        self._funding_slots[instrument.symbol] = slot
        if last is None:
            return
        rate = quote.funding_rate if quote.funding_rate is not None else self.default_funding_rate
        for boundary in range(last + 1, slot + 1):
            self.settle_funding(instrument.symbol, datetime.fromtimestamp(boundary * interval_secs, UTC),
                                rate, quote.mark)

    def settle_funding(self, symbol: str, ts: datetime, rate: Decimal, mark: Decimal) -> None:
        """Pay or charge every position on `symbol` its funding at `rate` on its notional at `mark`."""
        instrument = self.instruments[symbol]
        for account_id, account in self._accounts.items():
            pos = account.positions.get(instrument.symbol)
            if pos is None:
                continue
            amount = _wallet(-self._settle_notional(instrument, pos.contracts, mark) * rate)
            self._credit(account, instrument.settle, amount)
            payment = FundingPayment(
                payment_id=self._new_id(), symbol=instrument.symbol, amount=amount,
                currency=instrument.settle, rate=rate, position_contracts=pos.contracts, ts=ts,
            )
            account.funding.append(payment)
            self._forget(account, ts)
            self._emit(account_id, payment)
            self._emit(account_id, self.snapshot(account_id, ts))
