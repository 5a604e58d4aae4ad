"""Plans with prices, Stripe idempotency, experiment arms, completion and the favorites prompt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("amount_cents", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.bulk_insert(
        plans,
        [
            {
                "code": "quick",
                "name": "Quick question (15 min)",
                "amount_cents": 1999,
                "currency": "usd",
                "active": True,
            },
            {
                "code": "standard",
                "name": "Standard session (30 min)",
                "amount_cents": 3999,
                "currency": "usd",
                "active": True,
            },
            {
                "code": "extended",
                "name": "Extended diagnosis (60 min)",
                "amount_cents": 6999,
                "currency": "usd",
                "active": True,
            },
        ],
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("checkout_session_id", sa.String(255), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("outcome", sa.String(30), nullable=False),
    )
    with op.batch_alter_table("session_requests") as batch:
        batch.add_column(sa.Column("arm", sa.String(20), nullable=False, server_default="priority"))
        batch.add_column(sa.Column("checkout_session_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("favorite_prompt_dismissed_at", TS, nullable=True))
        batch.create_unique_constraint("uq_session_requests_checkout_session", ["checkout_session_id"])


def downgrade() -> None:
    with op.batch_alter_table("session_requests") as batch:
        batch.drop_constraint("uq_session_requests_checkout_session", type_="unique")
        batch.drop_column("favorite_prompt_dismissed_at")
        batch.drop_column("checkout_session_id")
        batch.drop_column("arm")
    op.drop_table("stripe_events")
    op.drop_table("plans")
