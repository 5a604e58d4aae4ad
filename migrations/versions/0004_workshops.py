"""Workshops: a favorite may be a team. Mechanics belong to at most one workshop; requests name a favorite workshop.

Before this revision a workshop was only a label on a mechanic (`provider_type`), and a favorite of type
`workshop` named a mechanic. Such favorites name an independent mechanic from here on (what they always did), and
`favorites.provider_id` names a mechanic or a workshop, so it no longer references `mechanics` (PostgreSQL drops
the constraint; SQLite never enforced it, its `foreign_keys` pragma being off).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UUID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
TS = sa.DateTime(timezone=True)
OPEN_WORKSHOP = (
    "status IN ('pending', 'accepted') AND preferred_workshop_id IS NOT NULL AND checkout_session_id IS NULL"
)


def upgrade() -> None:
    op.create_table(
        "workshops",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
    )
    with op.batch_alter_table("mechanics") as batch:
        batch.add_column(sa.Column("workshop_id", UUID, nullable=True))
        batch.create_index("idx_mechanics_workshop", ["workshop_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("favorites_provider_id_fkey", "favorites", type_="foreignkey")
    op.execute("UPDATE favorites SET provider_type = 'independent' WHERE provider_type = 'workshop'")
    op.create_index(
        "uq_session_requests_open_workshop",
        "session_requests",
        ["customer_id", "preferred_workshop_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_WORKSHOP),
        sqlite_where=sa.text(OPEN_WORKSHOP),
    )


def downgrade() -> None:
    op.drop_index("uq_session_requests_open_workshop", table_name="session_requests")
    op.execute("DELETE FROM favorites WHERE provider_type = 'workshop'")
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key("favorites_provider_id_fkey", "favorites", "mechanics", ["provider_id"], ["id"])
    with op.batch_alter_table("mechanics") as batch:
        batch.drop_index("idx_mechanics_workshop")
        batch.drop_column("workshop_id")
    op.drop_table("workshops")
