"""Orders, fills, funding payments and quotes as plain values; client order ids (DESIGN.md 6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

CLIENT_ID_PREFIX = "dk"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @staticmethod
    def for_signed(amount: Decimal) -> Side:
        return Side.BUY if amount > 0 else Side.SELL


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(str, Enum):
    PENDING = "pending"  # journaled, not yet acknowledged
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # the request may have reached the exchange: settle by client id

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


_BASE36_PAIRS = [high + low for high in _BASE36 for low in _BASE36]
"""The 1,296 two-digit strings: `to_base36` takes two digits a step (it runs for every order)."""


def to_base36(number: int) -> str:
    if number < 0:
        raise ValueError("negative id")
    digits = ""
    while number >= 36 * 36:
        number, pair = divmod(number, 36 * 36)
        digits = _BASE36_PAIRS[pair] + digits
    return (_BASE36[number] if number < 36 else _BASE36_PAIRS[number]) + digits


def client_order_id(decision_id: int, leg: int = 0, slice_no: int = 0) -> str:
    """`dk` + decision id in base 36 + leg letter + slice in decimal: letters and digits, <= 32 chars.

    The slice is decimal so that the id reads back one way only: it is the trailing digits, the leg the
    letter before them (a base-36 slice could begin with a letter, and collide with another decision)."""
    if not 0 <= leg < 26:
        raise ValueError(f"leg must be 0..25, got {leg}")
    if slice_no < 0:
        raise ValueError(f"negative slice number {slice_no}")
    cid = f"{CLIENT_ID_PREFIX}{to_base36(decision_id)}{_BASE36[10 + leg]}{slice_no}"
    if len(cid) > 32:
        raise ValueError(f"client order id too long: {cid}")
    return cid


def is_ours(client_id: str | None) -> bool:
    return bool(client_id) and str(client_id).startswith(CLIENT_ID_PREFIX)


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and mark for one instrument, stamped with the exchange's event time."""

    symbol: str
    bid: Decimal
    ask: Decimal
    mark: Decimal
    ts: datetime
    index: Decimal | None = None
    funding_rate: Decimal | None = None
    next_funding_ts: datetime | None = None
    """When the venue settles `funding_rate` next, where it says (a perpetual's ticker)."""

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a decision wants done on one instrument; no I/O, no ids yet."""

    symbol: str
    side: Side
    amount_contracts: Decimal
    reference_price: Decimal
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Side
    amount_contracts: Decimal
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    reduce_only: bool = False
    post_only: bool = False


@dataclass(frozen=True, slots=True)
class OrderState:
    client_order_id: str | None
    exchange_order_id: str
    symbol: str
    side: Side
    amount_contracts: Decimal
    filled_contracts: Decimal
    status: OrderStatus
    ts: datetime
    average_price: Decimal | None = None
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    reject_reason: str | None = None


class FillKind(str, Enum):
    """What a fill is (the journal's `fills.kind`): a trade on the book, or one of the exchange's own
    closes of a position."""

    TRADE = "trade"
    LIQUIDATION = "liquidation"  # liquidation or auto-deleveraging
    DELIVERY = "delivery"  # expiry: a future's delivery or settlement, an option's cash settlement


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: str
    exchange_order_id: str
    client_order_id: str | None
    symbol: str
    side: Side
    amount_contracts: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    ts: datetime
    notional_usd: Decimal = Decimal(0)
    is_maker: bool = False
    liquidation: bool = False
    """The exchange closed the position itself: a liquidation or auto-deleveraging execution, not an order
    of ours (`client_order_id` is then None)."""
    delivery: bool = False
    """The exchange closed an expired (or delisted) contract at its settlement price: a dated future's
    delivery or settlement, an option's cash settlement at its intrinsic value (its price, 0 for an option
    that expired worthless). No order of ours (`client_order_id` is None), no trade."""

    def __post_init__(self) -> None:
        if self.liquidation and self.delivery:
            raise ValueError(f"fill {self.trade_id}: a liquidation and a delivery at once")

    @property
    def kind(self) -> FillKind:
        if self.liquidation:
            return FillKind.LIQUIDATION
        return FillKind.DELIVERY if self.delivery else FillKind.TRADE

    @property
    def traded(self) -> bool:
        """A trade on the book (an order's fill): what `DK_MAX_DAILY_TRADED_USD` counts. Liquidations and
        deliveries are the exchange's own closes, not trading."""
        return self.kind is FillKind.TRADE


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """`amount` is signed from the account's view: positive = received. In `currency`."""

    payment_id: str
    symbol: str
    amount: Decimal
    currency: str
    rate: Decimal
    position_contracts: Decimal
    ts: datetime
