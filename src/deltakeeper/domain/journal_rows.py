"""The journal's rows as it reads them back (the JournalReader port): one frozen value per row, its fields
the table's columns by name (Decimals, aware UTC datetimes, enum values as strings), `id` the row's order
of journaling. `JournalQuery` is what a read selects."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class JournalQuery:
    """Rows oldest first; `since` inclusive, `until` exclusive. `asset` matches the row's asset where it
    has one (orders, decisions), else the base of its unified symbol (`BTC` matches `BTC/USDT:USDT`).
    A filter the rows cannot take (a side for funding payments) is refused with ConfigError."""

    since: datetime | None = None
    until: datetime | None = None
    symbol: str | None = None
    side: str | None = None
    asset: str | None = None
    limit: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class FillRow:
    id: int
    trade_id: str
    exchange_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    amount_contracts: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    notional_usd: Decimal
    is_maker: bool
    ts: datetime
    recorded_at: datetime
    kind: str
    """trade, liquidation or delivery (`domain.orders.FillKind`)."""


@dataclass(frozen=True, slots=True)
class FundingRow:
    id: int
    payment_id: str
    symbol: str
    amount: Decimal
    """Received positive, paid negative, in `currency`."""
    currency: str
    rate: Decimal
    position_contracts: Decimal
    ts: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: int
    client_order_id: str
    decision_id: int
    exchange_order_id: str | None
    symbol: str
    asset: str | None
    side: str
    order_type: str
    amount_contracts: Decimal
    price: Decimal | None
    reference_price: Decimal | None
    reduce_only: bool
    status: str
    filled_contracts: Decimal
    average_price: Decimal | None
    reject_reason: str | None
    created_ts: datetime
    updated_ts: datetime
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class DecisionRow:
    id: int
    decision_id: int
    ts: datetime
    asset: str
    delta_coin: Decimal
    delta_usd: Decimal
    target_coin: Decimal
    band_coin: Decimal
    price_usd: Decimal
    reason: str
    trading_state: str
    symbol: str | None
    side: str | None
    amount_contracts: Decimal | None
    est_cost_usd: Decimal | None
    detail: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    id: int
    ts: datetime
    asset: str
    delta_coin: Decimal
    delta_usd: Decimal
    gross_coin: Decimal
    trading_state: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class ControlEventRow:
    """A halt, resume or cancel-all request: who, why, when."""

    id: int
    ts: datetime
    action: str
    by: str
    reason: str


JournalRow = FillRow | FundingRow | OrderRow | DecisionRow | SnapshotRow | ControlEventRow


def row_dict(row: JournalRow) -> dict[str, Any]:
    """The row as {column: value}, columns in table order."""
    return {field.name: getattr(row, field.name) for field in fields(row)}
