"""The simulated engine's state: its limits, the fault switches, and each account's balances,
positions, orders and history as the engine keeps them (mutable, private to `sim`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.instruments import ZERO
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState, OrderStatus, OrderType, Quote, Side
from deltakeeper.ports import AccountEvent

BOOK_DEPTH = 25
HISTORY_SECS = 7 * 86_400
"""How long closed orders, fills and funding payments stay answerable: the bot asks for at most a week back
(its first backfill, `app.reconciliation.FIRST_BACKFILL`), and for less once it has a cursor."""
HISTORY_MAX = 1_000
"""At most this many closed orders, fills and funding payments (each) are kept per account."""
WALLET_QUANTUM = Decimal("1E-8")

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
class SimOrder:
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
class SimPosition:
    contracts: Decimal = ZERO
    entry_price: Decimal = ZERO


@dataclass
class SimAccount:
    balances: dict[str, Decimal]
    positions: dict[str, SimPosition] = field(default_factory=dict)
    open_orders: dict[str, SimOrder] = field(default_factory=dict)
    by_exchange_id: dict[str, SimOrder] = field(default_factory=dict)
    """Every order kept (open, or closed and not forgotten yet), oldest first."""
    by_client_id: dict[str, SimOrder] = field(default_factory=dict)
    """The latest order kept with each client id."""
    closed: deque[SimOrder] = field(default_factory=deque)
    """The closed orders kept, in the order they closed."""
    fills: deque[Fill] = field(default_factory=deque)
    funding: deque[FundingPayment] = field(default_factory=deque)


def to_wallet(amount: Decimal) -> Decimal:
    return amount.quantize(WALLET_QUANTUM)


def crosses(side: Side, limit: Decimal, quote: Quote) -> bool:
    """A buy at `limit` meets the ask, a sell meets the bid."""
    return limit >= quote.ask if side is Side.BUY else limit <= quote.bid
