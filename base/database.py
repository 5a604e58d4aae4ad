"""Database URLs, connections and migrations: the one place that knows which driver each backend uses.

Connections are `databases`' with our backends (`base/databases_internals.py`: statements compiled once per
process, SQLite connections reused); tables are migrated by alembic.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from databases import Database

from base.databases_internals import AppDatabase as AppDatabase  # what `open_database` opens

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def open_database(url: str) -> AppDatabase:
    """Not yet connected: the caller owns `connect()` and `disconnect()`."""
    ensure_sqlite_dir(url)
    return AppDatabase(url)


def sqlalchemy_async_url(url: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`, `postgresql://` -> `postgresql+asyncpg://`."""
    scheme, sep, rest = url.partition("://")
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
    return f"{driver.get(scheme, scheme)}{sep}{rest}"


def ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[1])
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)


def _alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = url
    return config


class SchemaCheck:
    """Whether the database's schema is at the migrations' head: a server on an older schema answers API calls
    with errors, so it must not say it is ready. Read once it is true, then cached (cheap on every probe)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._head = ScriptDirectory.from_config(_alembic_config(str(database.url))).get_current_head()
        self._is_current = False

    async def is_current(self) -> bool:
        if not self._is_current:
            try:
                revision = await self._database.fetch_val("SELECT version_num FROM alembic_version")
            except Exception:  # noqa: BLE001  (no such table: never migrated; each driver raises its own error)
                return False
            self._is_current = revision == self._head
        return self._is_current


def migrate(url: str) -> None:
    """Apply every alembic migration up to head (idempotent)."""
    ensure_sqlite_dir(url)
    command.upgrade(_alembic_config(url), "head")
