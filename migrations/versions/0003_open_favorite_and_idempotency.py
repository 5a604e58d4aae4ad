"""One open request per customer and favorite; Idempotency-Key records.

Before this revision a double click on "Book Again" stored two pending requests, and the console followed only the
newest. Older open duplicates are cancelled here (with an event saying why) so that the unique index can hold.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN_FAVORITE = (
    "status IN ('pending', 'accepted') AND preferred_mechanic_id IS NOT NULL AND checkout_session_id IS NULL"
)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    connection = op.get_bind()
    duplicates = connection.execute(
        sa.text(
            f"SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY customer_id, preferred_mechanic_id "
            f"ORDER BY created_at DESC) AS newest FROM session_requests WHERE {OPEN_FAVORITE}) AS ranked "
            "WHERE newest > 1"
        )
    ).fetchall()
    for (request_id,) in duplicates:
        connection.execute(
            sa.text(
                "UPDATE session_requests SET status = 'cancelled', phase = NULL, cancelled_at = CURRENT_TIMESTAMP "
                "WHERE id = :id"
            ),
            {"id": request_id},
        )
        connection.execute(
            sa.text(
                "INSERT INTO request_events (request_id, at, kind, detail) "
                "VALUES (:id, CURRENT_TIMESTAMP, 'cancelled', 'duplicate open request for the same favorite')"
            ),
            {"id": request_id},
        )
    op.create_index(
        "uq_session_requests_open_favorite",
        "session_requests",
        ["customer_id", "preferred_mechanic_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_FAVORITE),
        sqlite_where=sa.text(OPEN_FAVORITE),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("uq_session_requests_open_favorite", table_name="session_requests")
