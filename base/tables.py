"""SQLAlchemy Core metadata and the column types both floors share, plus the mechanics table they both read.

Alembic migrates this `metadata`; dispatch adds its tables to it. The mechanics table is here because presence
writes its `last_seen_at` and dispatch's registry owns the rest of the row.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# Native UUID on PostgreSQL, canonical text on SQLite (compared as text, so `IN (…)` binds need no processing).
UUID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")

mechanics = sa.Table(
    "mechanics",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("provider_type", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
    # The one workshop this mechanic works for, if any (a column: at most one).
    sa.Column("workshop_id", UUID, nullable=True),
    sa.Index("idx_mechanics_workshop", "workshop_id"),
)
