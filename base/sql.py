"""SQL that differs between SQLite and PostgreSQL, written once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from databases import Database
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement


def insert_ignoring_conflict(database: Database, table: sa.Table) -> sa.Insert:
    """`INSERT … ON CONFLICT DO NOTHING`: add `.returning()` to learn whether the row was new."""
    module = postgresql if database.url.dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()  # type: ignore[no-any-return]


def _as_itself(text: str) -> str:
    """`text` lower-cased for a LIKE pattern, every character taken as itself (`%` and `_` too)."""
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_text(column: sa.ColumnElement[Any], text: str) -> sa.ColumnElement[bool]:
    """`column` contains `text`, in any case."""
    return sa.func.lower(column).like(f"%{_as_itself(text)}%", escape="\\")


def starts_with_text(column: sa.ColumnElement[Any], text: str) -> sa.ColumnElement[bool]:
    """`column`, read as text, starts with `text` (a UUID column by its first characters, as consoles show it)."""
    return sa.cast(column, sa.String).like(f"{_as_itself(text)}%", escape="\\")


class Prepared(ClauseElement):
    """A statement built once with named `bindparam`s, and this call's values for them.

    Building a SQLAlchemy statement costs more than running it on a hot path (a `WITH … RETURNING` with its
    event rows: about 1.5 ms of CPU, against well under 0.1 ms to run it compiled): the use cases build each
    statement shape once per process and execute it as `Prepared(shape, values)`. The database layer
    (`base/database.py`) compiles each shape once and puts these values in its places; SQLAlchemy itself never
    compiles a `Prepared`.
    """

    __visit_name__ = "prepared"

    def __init__(self, statement: ClauseElement, values: Mapping[str, Any]) -> None:
        self.statement = statement
        self.values = values
