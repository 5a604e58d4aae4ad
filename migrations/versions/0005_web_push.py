"""Web Push: the mechanics' push subscriptions, and one row per push sent (a request reaches a device once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UUID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("mechanic_id", UUID, nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("endpoint", name="uq_push_subscriptions_endpoint"),
    )
    op.create_index("idx_push_subscriptions_mechanic", "push_subscriptions", ["mechanic_id"])
    op.create_table(
        "push_deliveries",
        sa.Column("request_id", UUID, nullable=False),
        sa.Column("subscription_id", UUID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "subscription_id", name="pk_push_deliveries"),
    )


def downgrade() -> None:
    op.drop_table("push_deliveries")
    op.drop_index("idx_push_subscriptions_mechanic", table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
