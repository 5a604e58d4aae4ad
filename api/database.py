"""Database URLs, connections and migrations: the one place that knows which driver each backend uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosqlite
from alembic import command
from alembic.config import Config as AlembicConfig
from databases import Database, DatabaseURL
from databases.backends.sqlite import SQLiteBackend, SQLitePool

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _ReusingSQLitePool(SQLitePool):
    """`databases` opens a new SQLite connection, and a thread for it, for every query; keep one open instead.

    SQLite takes one writer at a time anyway: handing the one connection to one task at a time queues writers in
    the event loop rather than in SQLite's busy handler, which sleeps. `synchronous=NORMAL` under WAL is safe
    against a crash of the process and saves an fsync per commit (SQLite is for development and demos;
    production runs on PostgreSQL).
    """

    def __init__(self, url: DatabaseURL, **options: Any) -> None:
        super().__init__(url, **options)
        self._connection: aiosqlite.Connection | None = None
        self._turn = asyncio.Lock()

    async def acquire(self) -> aiosqlite.Connection:
        await self._turn.acquire()
        if self._connection is None:
            self._connection = await super().acquire()
            await self._connection.execute("PRAGMA synchronous=NORMAL")
            await self._connection.execute("PRAGMA busy_timeout=5000")
        return self._connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        self._turn.release()

    async def close(self) -> None:
        if self._connection is not None:
            await super().release(self._connection)
            self._connection = None


class ReusingSQLiteBackend(SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self._reusing_pool = _ReusingSQLitePool(self._database_url, **self._options)
        self._pool = self._reusing_pool

    async def disconnect(self) -> None:
        await self._reusing_pool.close()
        await super().disconnect()


class AppDatabase(Database):
    """`databases.Database` with connections reused on SQLite too (asyncpg pools them already)."""

    SUPPORTED_BACKENDS = {  # noqa: RUF012  (the base class declares it as a plain mutable attribute)
        **Database.SUPPORTED_BACKENDS,
        "sqlite": "api.database:ReusingSQLiteBackend",
    }


def open_database(url: str) -> Database:
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


def migrate(url: str) -> None:
    """Apply every alembic migration up to head (idempotent)."""
    ensure_sqlite_dir(url)
    config = AlembicConfig(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
