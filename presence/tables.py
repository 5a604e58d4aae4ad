"""SQLAlchemy Core tables, defined once: the metadata that alembic migrates and both domains query.

Presence owns the mechanics table (their identity and persisted last_seen); dispatch adds its tables to the
same `metadata`.
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
)
