"""What a committed change still owes the sockets, and Idempotency-Keys stored with the booking they made.

`session_requests.owed_at`: set by every change that devices must hear of, in the same statement; cleared once
its frames were published. A request owed for longer than a grace period is re-delivered from its state by any
process (`dispatch/owed.py`), so a change whose publish failed (Redis down, a primary lost) or whose process died
before publishing still reaches its sockets.

`idempotency_keys.request_id`: the booking a key made, written in the booking's own transaction. A key is stored
only with what it created, so nothing can stick: a key whose first request died mid-way is free for its retry.
A retry is answered with the booking's current view and the original 201. Rows of the previous design (a key
claimed before running, its answer stored after) are removed: their 24 hours are a day of keys at most.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UUID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("session_requests") as table:
        table.add_column(sa.Column("owed_at", TS, nullable=True))
    op.create_index(
        "idx_session_requests_owed",
        "session_requests",
        ["owed_at"],
        postgresql_where=sa.text("owed_at IS NOT NULL"),
        sqlite_where=sa.text("owed_at IS NOT NULL"),
    )
    op.execute("DELETE FROM idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as table:
        table.drop_column("status_code")
        table.drop_column("body")
        table.add_column(sa.Column("request_id", UUID, nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as table:
        table.drop_column("request_id")
        table.add_column(sa.Column("status_code", sa.Integer, nullable=True))
        table.add_column(sa.Column("body", sa.Text, nullable=True))
    op.drop_index("idx_session_requests_owed", table_name="session_requests")
    with op.batch_alter_table("session_requests") as table:
        table.drop_column("owed_at")
