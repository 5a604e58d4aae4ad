"""A favorite's booking count is counted from the sessions themselves, so the counter column goes.

The counter was raised when a mechanic accepted: it counted sessions given back, missed the session before a
favorite was added (the "Add to Favorites" prompt comes after it), and counted one session for both a mechanic and
their workshop. `dispatch/favorites.py` now counts completed sessions, each once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("favorites") as table:
        table.drop_column("booking_count")


def downgrade() -> None:
    with op.batch_alter_table("favorites") as table:
        table.add_column(sa.Column("booking_count", sa.Integer, nullable=False, server_default="0"))
