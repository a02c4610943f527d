"""A fill's kind: a trade, or one of the exchange's own closes (a liquidation, a delivery at expiry), so
that only trades count toward the traded notional of the day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows journaled before this revision are taken for trades: the journal did not keep what they were.
    op.add_column("fills", sa.Column("kind", sa.String(length=16), server_default="trade", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.drop_column("kind")
