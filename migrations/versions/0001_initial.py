"""Mechanics, favorites, session requests with their routing state, event log and exclusions.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UUID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mechanics",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider_type", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
    )
    op.create_table(
        "favorites",
        sa.Column("customer_id", UUID, nullable=False),
        sa.Column("provider_id", UUID, sa.ForeignKey("mechanics.id"), nullable=False),
        sa.Column("provider_type", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("booking_count", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("customer_id", "provider_id", name="uq_favorites_customer_provider"),
    )
    op.create_table(
        "session_requests",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("customer_id", UUID, nullable=False),
        sa.Column("session_type", sa.String(20), nullable=False),
        sa.Column("plan_code", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("preferred_workshop_id", UUID, nullable=True),
        sa.Column("preferred_mechanic_id", UUID, sa.ForeignKey("mechanics.id"), nullable=True),
        sa.Column("routing_type", sa.String(30), nullable=False),
        sa.Column("priority_window_minutes", sa.Integer, nullable=True),
        sa.Column("priority_notified_at", TS, nullable=True),
        sa.Column("fallback_broadcast_at", TS, nullable=True),
        sa.Column("mechanic_id", UUID, sa.ForeignKey("mechanics.id"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("accepted_at", TS, nullable=True),
        sa.Column("routing", sa.String(20), nullable=False),
        sa.Column("provider_type", sa.String(20), nullable=True),
        sa.Column("customer_name", sa.String(200), nullable=True),
        sa.Column("phase", sa.String(20), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("priority_deadline", TS, nullable=True),
        sa.Column("offer_acked_at", TS, nullable=True),
        sa.Column("offer_resends", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ack_deadline", TS, nullable=True),
        sa.Column("reroute_reason", sa.String(30), nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("cancelled_at", TS, nullable=True),
    )
    op.create_index(
        "idx_session_requests_preferred_mechanic",
        "session_requests",
        ["preferred_mechanic_id"],
        postgresql_where=sa.text("preferred_mechanic_id IS NOT NULL"),
        sqlite_where=sa.text("preferred_mechanic_id IS NOT NULL"),
    )
    op.create_index("idx_session_requests_open_deadlines", "session_requests", ["status", "phase", "priority_deadline"])
    op.create_index("idx_session_requests_customer", "session_requests", ["customer_id", "created_at"])
    op.create_table(
        "request_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", UUID, sa.ForeignKey("session_requests.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("mechanic_id", UUID, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("detail", sa.String(500), nullable=True),
    )
    op.create_index("idx_request_events_request", "request_events", ["request_id", "id"])
    op.create_table(
        "request_exclusions",
        sa.Column("request_id", UUID, sa.ForeignKey("session_requests.id"), nullable=False),
        sa.Column("mechanic_id", UUID, nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "mechanic_id", name="pk_request_exclusions"),
    )


def downgrade() -> None:
    op.drop_table("request_exclusions")
    op.drop_index("idx_request_events_request", table_name="request_events")
    op.drop_table("request_events")
    op.drop_index("idx_session_requests_customer", table_name="session_requests")
    op.drop_index("idx_session_requests_open_deadlines", table_name="session_requests")
    op.drop_index("idx_session_requests_preferred_mechanic", table_name="session_requests")
    op.drop_table("session_requests")
    op.drop_table("favorites")
    op.drop_table("mechanics")
