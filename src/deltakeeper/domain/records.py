"""What the journal keeps: snapshots of the account, decisions, orders (as values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.exposure import Position
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, OrderType, Side


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Wallet balances (coins, excluding unrealised PnL) and open derivative positions, at `ts`.

    `seq` orders snapshots of the same `ts`: the simulator counts the snapshots it takes (at full speed
    its clock stands still between ticks, so an order's fill and the refresh after it share the time of
    the snapshot before them); 0 where the exchange gives no such order."""

    balances: dict[str, Decimal]
    positions: tuple[Position, ...]
    ts: datetime
    seq: int = 0


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    decision_id: int
    ts: datetime
    asset: str
    delta_coin: Decimal
    delta_usd: Decimal
    target_coin: Decimal
    band_coin: Decimal
    price_usd: Decimal
    reason: str
    """`rebalance`, or why no trade: `inside_band`, `rounds_to_zero`, a risk limit, `stale_price`..."""
    trading_state: str
    symbol: str | None = None
    side: Side | None = None
    amount_contracts: Decimal | None = None
    est_cost_usd: Decimal | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order as the journal knows it: written as PENDING before it is sent."""

    client_order_id: str
    decision_id: int
    symbol: str
    side: Side
    amount_contracts: Decimal
    order_type: OrderType
    status: OrderStatus
    created_ts: datetime
    price: Decimal | None = None
    reduce_only: bool = False
    exchange_order_id: str | None = None
    filled_contracts: Decimal = Decimal(0)
    average_price: Decimal | None = None
    reject_reason: str | None = None
    reference_price: Decimal | None = None
    asset: str | None = None

    @staticmethod
    def pending(
        request: OrderRequest, decision_id: int, ts: datetime, reference_price: Decimal, asset: str
    ) -> OrderRecord:
        return OrderRecord(
            client_order_id=request.client_order_id,
            decision_id=decision_id,
            symbol=request.symbol,
            side=request.side,
            amount_contracts=request.amount_contracts,
            order_type=request.order_type,
            status=OrderStatus.PENDING,
            created_ts=ts,
            price=request.price,
            reduce_only=request.reduce_only,
            reference_price=reference_price,
            asset=asset,
        )


@dataclass(frozen=True, slots=True)
class ControlState:
    """The operator's word, kept in the journal so it works across processes and restarts."""

    halted: bool
    reason: str = ""
    by: str = ""
    ts: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)


__all__ = ["AccountSnapshot", "ControlState", "DecisionRecord", "OrderRecord", "OrderState"]
