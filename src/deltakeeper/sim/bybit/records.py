"""What the emulator keeps beside the engine: Bybit's view of orders, executions, positions, the
transaction log and market statistics (fields the engine has no notion of)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from deltakeeper.domain.instruments import ZERO

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_SAMPLE_MS = 60_000


@dataclass
class OrderMeta:
    """An order's Bybit attributes; the engine's OrderState carries the rest."""

    category: str
    created_ms: int
    time_in_force: str
    order_link_id: str
    qty: Decimal
    """As requested: in the quote coin for a spot market order with marketUnit=quoteCoin."""
    market_unit: str = ""
    reduce_only: bool = False
    last_price_on_created: Decimal | None = None
    cum_exec_value: Decimal = ZERO
    cum_exec_fee: Decimal = ZERO
    fee_currency: str = ""
    closed_pnl: Decimal = ZERO
    reject_reason: str = "EC_NoError"
    cancel_type: str = "UNKNOWN"
    create_type: str = "CreateByUser"
    """Derivatives' `createType`: the liquidation engine's orders are `CreateByTakeOver_PassThrough`."""


@dataclass(frozen=True, slots=True)
class Execution:
    """One row of /v5/execution/list and one item of the `execution` topic: a trade (`execType` Trade, or
    BustTrade for the liquidation engine's), an expired contract's Delivery (Settle for an inverse
    future), or a funding fee."""

    category: str
    symbol: str
    exec_id: str
    order_id: str
    order_link_id: str
    side: str
    order_price: Decimal | None
    order_qty: Decimal
    leaves_qty: Decimal
    order_type: str
    exec_type: str
    exec_price: Decimal
    exec_qty: Decimal
    exec_value: Decimal
    exec_fee: Decimal
    fee_rate: Decimal
    fee_currency: str
    is_maker: bool
    mark_price: Decimal
    index_price: Decimal | None
    closed_size: Decimal
    exec_ms: int
    seq: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One row of /v5/account/transaction-log: a trade or a funding settlement and its cash effect."""

    entry_id: str
    category: str
    symbol: str
    side: str
    time_ms: int
    entry_type: str
    qty: Decimal
    size: Decimal
    currency: str
    trade_price: Decimal
    funding: Decimal
    fee: Decimal
    cash_flow: Decimal
    change: Decimal
    cash_balance: Decimal
    fee_rate: Decimal
    trade_id: str
    order_id: str
    order_link_id: str


@dataclass
class PositionBook:
    """Per account and derivative market: the position as of the last fill (to price the next one's
    closed PnL) and Bybit's realised PnL figures (trading PnL less fees, plus funding)."""

    contracts: Decimal = ZERO
    entry_price: Decimal = ZERO
    cum_realised: Decimal = ZERO
    cur_realised: Decimal = ZERO
    created_ms: int = 0
    updated_ms: int = 0
    seq: int = -1


@dataclass
class MarketStats:
    """Rolling 24h figures of one market, on simulated time: prices sampled once a minute, and the
    volume the emulator's own accounts traded."""

    prices: deque[tuple[int, Decimal]] = field(default_factory=deque)
    trades: deque[tuple[int, Decimal, Decimal]] = field(default_factory=deque)
    last: Decimal | None = None

    def on_price(self, ts_ms: int, price: Decimal) -> None:
        self.last = price
        if not self.prices or ts_ms - self.prices[-1][0] >= _SAMPLE_MS:
            self.prices.append((ts_ms, price))
        while self.prices and self.prices[0][0] < ts_ms - DAY_MS:
            self.prices.popleft()

    def on_trade(self, ts_ms: int, qty: Decimal, value: Decimal) -> None:
        self.trades.append((ts_ms, qty, value))
        while self.trades and self.trades[0][0] < ts_ms - DAY_MS:
            self.trades.popleft()

    def price_ago(self, now_ms: int, ago_ms: int) -> Decimal | None:
        """The first sampled price at or after `now - ago` (the oldest we have within the window)."""
        for ts_ms, price in self.prices:
            if ts_ms >= now_ms - ago_ms:
                return price
        return self.last

    def high_low(self) -> tuple[Decimal | None, Decimal | None]:
        values = [price for _, price in self.prices]
        if self.last is not None:
            values.append(self.last)
        return (max(values), min(values)) if values else (None, None)

    def volume(self) -> tuple[Decimal, Decimal]:
        return sum((q for _, q, _ in self.trades), ZERO), sum((v for _, _, v in self.trades), ZERO)
