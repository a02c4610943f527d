"""The journal's tables (SQLAlchemy Core) and the column types that keep money exact and time in UTC.

`Money` is NUMERIC(36, 18) on PostgreSQL. SQLite has no exact decimal type (NUMERIC affinity turns
values into 8-byte floats), so there the same column is text in plain notation and is read back as
`Decimal`. Either way a value comes back without trailing fractional zeros, so both databases return
the same `Decimal` for the same stored value.

`UtcDateTime` refuses naive datetimes, stores UTC (timestamptz on PostgreSQL, ISO text on SQLite) and
always returns aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def plain_decimal(value: Decimal) -> Decimal:
    """The same number without trailing fractional zeros (and never with a positive exponent)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(36, 18) on PostgreSQL, plain-notation text on SQLite."""

    impl = Numeric(36, 18, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(36, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return format(Decimal(value), "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return plain_decimal(Decimal(value))


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the journal stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _id() -> Column[int]:
    """An autoincrementing surrogate key (a rowid alias on SQLite, BIGINT identity on PostgreSQL)."""
    return Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)


def _recorded_at() -> Column[datetime]:
    """The wall-clock time the row was written."""
    return Column("recorded_at", UtcDateTime(), nullable=False)


decisions = Table(
    "decisions",
    metadata,
    _id(),
    Column("decision_id", BigInteger, nullable=False, unique=True),
    Column("ts", UtcDateTime(), nullable=False, index=True),
    Column("asset", String(32), nullable=False),
    Column("delta_coin", Money(), nullable=False),
    Column("delta_usd", Money(), nullable=False),
    Column("target_coin", Money(), nullable=False),
    Column("band_coin", Money(), nullable=False),
    Column("price_usd", Money(), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("trading_state", String(32), nullable=False),
    Column("symbol", String(64)),
    Column("side", String(8)),
    Column("amount_contracts", Money()),
    Column("est_cost_usd", Money()),
    Column("detail", Text, nullable=False),
    _recorded_at(),
)

orders = Table(
    "orders",
    metadata,
    _id(),
    Column("client_order_id", String(64), nullable=False, unique=True),
    Column("decision_id", BigInteger, nullable=False, index=True),
    Column("exchange_order_id", String(128), index=True),
    Column("symbol", String(64), nullable=False),
    Column("asset", String(32)),
    Column("side", String(8), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("amount_contracts", Money(), nullable=False),
    Column("price", Money()),
    Column("reference_price", Money()),
    Column("reduce_only", Boolean, nullable=False),
    Column("status", String(32), nullable=False, index=True),
    Column("filled_contracts", Money(), nullable=False),
    Column("average_price", Money()),
    Column("reject_reason", Text),
    Column("created_ts", UtcDateTime(), nullable=False, index=True),
    Column("updated_ts", UtcDateTime(), nullable=False),
    _recorded_at(),
)

fills = Table(
    "fills",
    metadata,
    _id(),
    Column("trade_id", String(128), nullable=False),
    Column("exchange_order_id", String(128), nullable=False),
    Column("client_order_id", String(64)),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("amount_contracts", Money(), nullable=False),
    Column("price", Money(), nullable=False),
    Column("fee", Money(), nullable=False),
    Column("fee_currency", String(32), nullable=False),
    Column("notional_usd", Money(), nullable=False),
    Column("is_maker", Boolean, nullable=False),
    Column("ts", UtcDateTime(), nullable=False, index=True),
    _recorded_at(),
    Column("kind", String(16), nullable=False, server_default="trade"),  # domain.orders.FillKind
    UniqueConstraint("symbol", "trade_id"),
)

funding_payments = Table(
    "funding_payments",
    metadata,
    _id(),
    Column("payment_id", String(128), nullable=False, unique=True),
    Column("symbol", String(64), nullable=False),
    Column("amount", Money(), nullable=False),
    Column("currency", String(32), nullable=False),
    Column("rate", Money(), nullable=False),
    Column("position_contracts", Money(), nullable=False),
    Column("ts", UtcDateTime(), nullable=False, index=True),
    _recorded_at(),
)

snapshots = Table(
    "snapshots",
    metadata,
    _id(),
    Column("ts", UtcDateTime(), nullable=False, index=True),
    Column("asset", String(32), nullable=False),
    Column("delta_coin", Money(), nullable=False),
    Column("delta_usd", Money(), nullable=False),
    Column("gross_coin", Money(), nullable=False),
    Column("trading_state", String(32), nullable=False),
    _recorded_at(),
)

control = Table(
    "control",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("halted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("by", String(128), nullable=False),
    Column("ts", UtcDateTime()),
    Column("extra", JSON, nullable=False),
)

control_events = Table(
    "control_events",
    metadata,
    _id(),
    Column("ts", UtcDateTime(), nullable=False, index=True),
    Column("action", String(16), nullable=False),
    Column("by", String(128), nullable=False),
    Column("reason", Text, nullable=False),
)
