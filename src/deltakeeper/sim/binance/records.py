"""What the Binance dialect keeps beside the engine: orders with Binance's attributes, the account's
trades and its income history (fields the engine has no notion of, kept as long as the emulator runs)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from deltakeeper.domain.instruments import ZERO

OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})


@dataclass
class OrderRecord:
    """One order as Binance reports it; updated from the engine's events."""

    order_id: int
    engine_id: str
    symbol: str
    """Binance's symbol (SOLUSDT)."""
    client_order_id: str
    side: str
    order_type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    reduce_only: bool
    created_ms: int
    update_ms: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    announced: bool = False
    """Whether its NEW update has been pushed on the user-data stream."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO


@dataclass(frozen=True, slots=True)
class UserTrade:
    """One row of /fapi/v1/userTrades."""

    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    time_ms: int
    maker: bool


@dataclass(frozen=True, slots=True)
class Income:
    """One row of /fapi/v1/income: a funding fee, a commission or a realised PnL."""

    tran_id: int
    symbol: str
    income_type: str
    income: Decimal
    asset: str
    time_ms: int
    trade_id: str = ""
