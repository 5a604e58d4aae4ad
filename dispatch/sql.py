"""SQL that differs between SQLite and PostgreSQL, written once."""

from __future__ import annotations

import sqlalchemy as sa
from databases import Database
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflict(database: Database, table: sa.Table) -> sa.Insert:
    """`INSERT … ON CONFLICT DO NOTHING`: add `.returning()` to learn whether the row was new."""
    module = postgresql if database.url.dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()  # type: ignore[no-any-return]
