"""Alembic wired to the one settings module and the tables defined once in the domain packages.

Runs on the async drivers the server uses (aiosqlite, asyncpg), so no second database driver is needed. A caller
may pass the URL in `config.attributes["database_url"]` (tests, `base.database.migrate`); otherwise settings decide.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import dispatch.tables  # noqa: F401  (registers dispatch's tables on the shared metadata)
from base.database import sqlalchemy_async_url
from base.tables import metadata

config = context.config


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url is None:
        from api.settings import load_settings

        url = load_settings().database_url
    return sqlalchemy_async_url(url)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
