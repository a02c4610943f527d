"""The initial journal: decisions, orders, fills, funding payments, snapshots, operator control.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from deltakeeper.adapters.journal.models import Money, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "decisions",
        _id(),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("delta_coin", Money(), nullable=False),
        sa.Column("delta_usd", Money(), nullable=False),
        sa.Column("target_coin", Money(), nullable=False),
        sa.Column("band_coin", Money(), nullable=False),
        sa.Column("price_usd", Money(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("trading_state", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=True),
        sa.Column("amount_contracts", Money(), nullable=True),
        sa.Column("est_cost_usd", Money(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.UniqueConstraint("decision_id", name="uq_decisions_decision_id"),
    )
    op.create_index("ix_decisions_ts", "decisions", ["ts"])

    op.create_table(
        "orders",
        _id(),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=128), nullable=True),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("amount_contracts", Money(), nullable=False),
        sa.Column("price", Money(), nullable=True),
        sa.Column("reference_price", Money(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("filled_contracts", Money(), nullable=False),
        sa.Column("average_price", Money(), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("created_ts", UtcDateTime(), nullable=False),
        sa.Column("updated_ts", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("client_order_id", name="uq_orders_client_order_id"),
    )
    op.create_index("ix_orders_created_ts", "orders", ["created_ts"])
    op.create_index("ix_orders_decision_id", "orders", ["decision_id"])
    op.create_index("ix_orders_exchange_order_id", "orders", ["exchange_order_id"])
    op.create_index("ix_orders_status", "orders", ["status"])

    op.create_table(
        "fills",
        _id(),
        sa.Column("trade_id", sa.String(length=128), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=128), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("amount_contracts", Money(), nullable=False),
        sa.Column("price", Money(), nullable=False),
        sa.Column("fee", Money(), nullable=False),
        sa.Column("fee_currency", sa.String(length=32), nullable=False),
        sa.Column("notional_usd", Money(), nullable=False),
        sa.Column("is_maker", sa.Boolean(), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fills"),
        sa.UniqueConstraint("symbol", "trade_id", name="uq_fills_symbol_trade_id"),
    )
    op.create_index("ix_fills_ts", "fills", ["ts"])

    op.create_table(
        "funding_payments",
        _id(),
        sa.Column("payment_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(length=32), nullable=False),
        sa.Column("rate", Money(), nullable=False),
        sa.Column("position_contracts", Money(), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_funding_payments"),
        sa.UniqueConstraint("payment_id", name="uq_funding_payments_payment_id"),
    )
    op.create_index("ix_funding_payments_ts", "funding_payments", ["ts"])

    op.create_table(
        "snapshots",
        _id(),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.Column("delta_coin", Money(), nullable=False),
        sa.Column("delta_usd", Money(), nullable=False),
        sa.Column("gross_coin", Money(), nullable=False),
        sa.Column("trading_state", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index("ix_snapshots_ts", "snapshots", ["ts"])

    op.create_table(
        "control",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("halted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_control"),
    )

    op.create_table(
        "control_events",
        _id(),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_control_events"),
    )
    op.create_index("ix_control_events_ts", "control_events", ["ts"])


def downgrade() -> None:
    for table in ("control_events", "control", "snapshots", "funding_payments", "fills", "orders",
                  "decisions"):
        op.drop_table(table)
