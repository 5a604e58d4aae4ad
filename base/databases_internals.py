"""`databases`' backends, compiling each statement once: the one module that uses `databases`', SQLAlchemy's and
aiosqlite's private internals (`databases.backends.*`, `CursorResultMetaData`, a connection's thread), for the
versions `require` names below.

`databases` compiles every SQLAlchemy statement on every call (a quarter to a third of the CPU of the hot paths
when profiled). Here each statement's shape is compiled once per process and reused: SQLAlchemy's own cache key
tells two calls of one shape apart from their bound values, and `construct_params` puts this call's values in
the cached statement's places. Statements whose SQL text depends on their values (expanding `IN` lists, values
rendered inline) are compiled each time, as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import asyncpg
from databases import Database, DatabaseURL, interfaces
from databases.backends.common.records import Record, Row, create_column_maps
from databases.backends.postgres import PostgresBackend, PostgresConnection
from databases.backends.sqlite import (
    CompilationContext,
    SQLiteBackend,
    SQLiteConnection,
    SQLitePool,
    SQLiteTransaction,
)
from sqlalchemy.engine.cursor import CursorResultMetaData
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.ddl import DDLElement

from base.sql import Prepared
from base.sqlite_checkpoints import WalCheckpointer
from base.versions import require

# What would let this module go: `databases` keeping each statement's compiled form itself (it compiles every
# query on every call), and a public way to build its `Record` from a driver's rows; then this is a plain
# `Database(url)`. Behaviours relied on are pinned by tests/test_internals.py and the whole suite.
require("databases", "0.9", "0.10", module=__name__)
require("sqlalchemy", "2.1", "2.2", module=__name__)
require("aiosqlite", "0.20", "0.23", module=__name__)  # its connection's thread: `_execute`, `_conn`


STATEMENT_CACHE_LIMIT = 2000


@dataclass(frozen=True)
class _Compiled:
    compiled: Any
    sql: str
    order: tuple[tuple[str, Any], ...]  # each bind's key and its driver-side processor (or None), in order
    result_map: Any
    # How a `Record` finds its columns, made once: `databases` makes it on every query, and doing so renders each
    # labelled column to a string, through a dialect and compilers of its own that end as cyclic garbage (the
    # collector's full passes, hundreds of milliseconds with many sockets or streams open, ran every few seconds).
    column_maps: Any
    context: Any = None


class StatementCache:
    """Compiled statements by shape, for one backend of one process."""

    def __init__(self) -> None:
        self._by_shape: dict[Any, _Compiled] = {}
        self._prepared: dict[ClauseElement, _Compiled] = {}  # by identity: shapes built once and kept

    def arguments(
        self, query: ClauseElement, compile_new: Callable[[ClauseElement, Any], _Compiled]
    ) -> tuple[_Compiled, list[Any]] | None:
        """The cached compilation of `query`'s shape and this call's arguments; None when it cannot be cached."""
        if isinstance(query, Prepared):
            return self._prepared_arguments(query, compile_new)
        if isinstance(query, DDLElement):
            return None
        key = query._generate_cache_key()
        if key is None or any(b.expanding or b.literal_execute for b in key.bindparams):
            return None
        entry = self._by_shape.get(key.key)
        if entry is None:
            if len(self._by_shape) >= STATEMENT_CACHE_LIMIT:
                self._by_shape.clear()
            entry = self._by_shape[key.key] = compile_new(query, key)
        params = entry.compiled.construct_params(extracted_parameters=key.bindparams)
        return entry, [processor(params[k]) if processor else params[k] for k, processor in entry.order]

    def _prepared_arguments(
        self, query: Prepared, compile_new: Callable[[ClauseElement, Any], _Compiled]
    ) -> tuple[_Compiled, list[Any]]:
        entry = self._prepared.get(query.statement)
        if entry is None:
            entry = compile_new(query.statement, None)
            if any(b.expanding or b.literal_execute for b in entry.compiled.binds.values()):
                raise TypeError("A Prepared statement must have a fixed shape (no expanding IN lists).")
            self._prepared[query.statement] = entry
        params = entry.compiled.construct_params(params=query.values)
        return entry, [processor(params[k]) if processor else params[k] for k, processor in entry.order]


class _CachingPostgresConnection(PostgresConnection):
    def __init__(self, backend: CachingPostgresBackend, dialect: Any) -> None:
        super().__init__(backend, dialect)
        self._statements = backend.statements

    def _compile(self, query: ClauseElement) -> tuple[str, list[Any], Any]:
        hit = self._statements.arguments(query, self._compile_new)
        if hit is None:
            return super()._compile(query)
        entry, args = hit
        return entry.sql, args, entry.result_map

    def _compile_new(self, query: ClauseElement, key: Any) -> _Compiled:
        compiled: Any = query.compile(dialect=self._dialect, cache_key=key, compile_kwargs={"render_postcompile": True})
        keys = sorted(compiled.params)
        mapping = {key: f"${i}" for i, key in enumerate(keys, start=1)}
        processors = compiled._bind_processors
        return _Compiled(
            compiled=compiled,
            sql=compiled.string % mapping,
            order=tuple((key, processors.get(key)) for key in keys),
            result_map=compiled._result_columns,
            column_maps=create_column_maps(compiled._result_columns),
        )

    async def fetch_all(self, query: ClauseElement) -> list[Any]:
        """As `databases` fetches, with the statement's column maps made once (`_Compiled.column_maps`)."""
        assert self._connection is not None, "Connection is not acquired"
        hit = self._statements.arguments(query, self._compile_new)
        if hit is None:
            return await super().fetch_all(query)
        entry, args = hit
        rows = await self._connection.fetch(entry.sql, *args)
        return [Record(row, entry.result_map, self._dialect, entry.column_maps) for row in rows]

    async def fetch_one(self, query: ClauseElement) -> Any:
        assert self._connection is not None, "Connection is not acquired"
        hit = self._statements.arguments(query, self._compile_new)
        if hit is None:
            return await super().fetch_one(query)
        entry, args = hit
        row = await self._connection.fetchrow(entry.sql, *args)
        return None if row is None else Record(row, entry.result_map, self._dialect, entry.column_maps)


async def keep_session(connection: asyncpg.Connection) -> None:
    """A pool's reset for a server that leaves no session state behind: no `SET`, no `LISTEN`, no cursor held open
    across calls, no advisory lock (asyncpg has already rolled back any open transaction when this runs).
    asyncpg's default reset sends `RESET ALL; UNLISTEN *; CLOSE ALL; …` on every release: one round trip more
    for every statement, a third of a booking's database time."""


class CachingPostgresBackend(PostgresBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **{"reset": keep_session, **options})
        self.statements = StatementCache()

    def connection(self) -> _CachingPostgresConnection:
        return _CachingPostgresConnection(self, self._dialect)


class _CachingSQLiteConnection(SQLiteConnection):
    """Each call is one trip to aiosqlite's thread where `databases` makes three (execute, fetch, close: each a
    queue, a thread wakeup and a wakeup of the loop, a dozen in one booking). A cursor is read to its end, which
    finishes its statement and releases its lock, and is left to the garbage collector instead of closed by
    another trip."""

    def __init__(self, pool: SQLitePool, dialect: Any, statements: StatementCache, columns: dict[str, Any]) -> None:
        super().__init__(pool, dialect)
        self._statements = statements
        self._columns = columns

    async def fetch_all(self, query: ClauseElement) -> list[Record]:  # type: ignore[override]
        statement = self._statement(query)
        rows, description = await self._rows(statement.sql, statement.args)
        return self._records(statement, rows, description)

    async def write_then(
        self, first: ClauseElement, then: Callable[[Record], Sequence[ClauseElement]]
    ) -> Record | None:
        """`first`, which returns one row or none, then the statements `then` makes from that row, in one
        transaction and one trip to the connection's thread, where `databases` makes four or more (`BEGIN`, each
        statement, `COMMIT`): each trip waits for the thread to wake and for the event loop to let its result in,
        and a fallback's commit was two of the five waits between its deadline and its broadcast. `then` runs in
        that thread. A caller cancelled meanwhile leaves the transaction to finish there, whole or not at all."""
        connection = self._connection
        assert connection is not None, "Connection is not acquired"
        in_thread: Any = connection._execute  # aiosqlite's own queue to its thread (untyped)
        statement = self._statement(first)
        written: list[Record] = []

        def rest(rows: list[Any], description: Any) -> list[_Statement]:
            written.append(self._records(statement, rows, description)[0])
            return [self._statement(query) for query in then(written[0])]

        await in_thread(_write_then, connection._conn, statement, rest)
        return written[0] if written else None

    def _statement(self, query: ClauseElement) -> _Statement:
        hit = self._statements.arguments(query, self._compile_new)
        if hit is None:  # a shape that is compiled on every call
            sql, args, result_columns, context = self._compile(query)
            return _Statement(sql, args, result_columns, context, create_column_maps(result_columns))
        entry, args = hit
        return _Statement(entry.sql, args, entry.result_map, entry.context, entry.column_maps)

    def _records(self, statement: _Statement, rows: list[Any], description: Any) -> list[Record]:
        if statement.sql not in self._columns:
            if len(self._columns) >= STATEMENT_CACHE_LIMIT:
                self._columns.clear()
            self._columns[statement.sql] = description
        result_columns, column_maps = statement.result_columns, statement.column_maps
        metadata = CursorResultMetaData(statement.context, description)
        keymap: Any = metadata._keymap  # `databases` hands it over as it is (its annotation is narrower)
        return [
            Record(Row(metadata, metadata._processors, keymap, row), result_columns, self._dialect, column_maps)
            for row in rows
        ]

    async def fetch_one(self, query: ClauseElement) -> Record | None:
        rows = await self.fetch_all(query)
        return rows[0] if rows else None

    async def execute(self, query: ClauseElement) -> Any:
        assert self._connection is not None, "Connection is not acquired"
        sql, args, _, _ = self._compile(query)
        cursor = await self._connection.execute(sql, args)
        if cursor.description is not None:  # it returns rows (a PRAGMA, a RETURNING): read them, or it holds a lock
            await cursor.fetchall()
        return cursor.rowcount if cursor.lastrowid == 0 else cursor.lastrowid  # as `databases` answers

    async def _rows(self, sql: str, args: Any) -> tuple[list[Any], Any]:
        """A statement's columns are the same on every call: once known, its rows come back in one trip."""
        assert self._connection is not None, "Connection is not acquired"
        description = self._columns.get(sql)
        if description is not None:
            return list(await self._connection.execute_fetchall(sql, args)), description
        cursor = await self._connection.execute(sql, args)
        return list(await cursor.fetchall()), cursor.description

    def transaction(self) -> _OneTripSQLiteTransaction:
        return _OneTripSQLiteTransaction(self)

    def _compile(self, query: ClauseElement) -> tuple[str, list[Any], Any, Any]:  # type: ignore[override]
        hit = self._statements.arguments(query, self._compile_new)
        if hit is None:
            return super()._compile(query)  # type: ignore[return-value]
        entry, args = hit
        return entry.sql, args, entry.result_map, entry.context

    def _compile_new(self, query: ClauseElement, key: Any) -> _Compiled:
        compiled: Any = query.compile(dialect=self._dialect, cache_key=key, compile_kwargs={"render_postcompile": True})
        context: Any = self._dialect.execution_ctx_cls()
        context.dialect = self._dialect
        context.result_column_struct = (
            compiled._result_columns,
            compiled._ordered_columns,
            compiled._textual_ordered_columns,
            compiled._ad_hoc_textual,
            compiled._loose_column_name_matching,
        )
        processors = compiled._bind_processors
        return _Compiled(
            compiled=compiled,
            sql=compiled.string,
            order=tuple((key, processors.get(key)) for key in compiled.positiontup or ()),
            result_map=compiled._result_columns,
            column_maps=create_column_maps(compiled._result_columns),
            context=CompilationContext(context),
        )


@dataclass(frozen=True)
class _Statement:
    """One statement compiled, with this call's arguments and what makes its rows into records."""

    sql: str
    args: list[Any]
    result_columns: Any
    context: Any
    column_maps: Any


def _write_then(
    connection: sqlite3.Connection, first: _Statement, rest: Callable[[list[Any], Any], list[_Statement]]
) -> None:
    """In the connection's thread: `first` and, if it returned rows, the statements `rest` makes from them, in one
    transaction; rolled back on any failure."""
    connection.execute("BEGIN")
    try:
        cursor = connection.execute(first.sql, first.args)
        rows = cursor.fetchall()
        if rows:
            for statement in rest(rows, cursor.description):
                connection.execute(statement.sql, statement.args).fetchall()
        connection.execute("COMMIT" if rows else "ROLLBACK")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


class _OneTripSQLiteTransaction(SQLiteTransaction):
    """`BEGIN`, `COMMIT` and savepoints in one trip each, where `databases` makes three."""

    async def start(self, is_root: bool, extra_options: dict[Any, Any]) -> None:
        self._is_root = is_root
        if is_root:
            await self._run("BEGIN")
        else:
            self._savepoint_name = f"STARLETTE_SAVEPOINT_{uuid.uuid4().hex}"
            await self._run(f"SAVEPOINT {self._savepoint_name}")

    async def commit(self) -> None:
        await self._run("COMMIT" if self._is_root else f"RELEASE SAVEPOINT {self._savepoint_name}")

    async def rollback(self) -> None:
        await self._run("ROLLBACK" if self._is_root else f"ROLLBACK TO SAVEPOINT {self._savepoint_name}")

    async def _run(self, sql: str) -> None:
        connection = self._connection._connection
        assert connection is not None, "Connection is not acquired"
        await connection.execute_fetchall(sql)


class _ReusingSQLitePool(SQLitePool):
    """`databases` opens a new SQLite connection, and a thread for it, for every query; keep one open instead.

    SQLite takes one writer at a time anyway: handing the one connection to one task at a time queues writers in
    the event loop rather than in SQLite's busy handler, which sleeps. `synchronous=NORMAL` under WAL is safe
    against a crash of the process and saves an fsync per commit (SQLite is for development and demos;
    production runs on PostgreSQL). Its commits leave the log's checkpoints to a `WalCheckpointer`.
    """

    def __init__(self, url: DatabaseURL, **options: Any) -> None:
        super().__init__(url, **options)
        self._connection: aiosqlite.Connection | None = None
        self._turn = asyncio.Lock()
        self._checkpointer = WalCheckpointer(self._database, self._options)

    async def acquire(self) -> aiosqlite.Connection:
        await self._turn.acquire()
        if self._connection is None:
            self._connection = await super().acquire()
            await self._connection.execute_fetchall("PRAGMA busy_timeout=5000")  # first: it covers the next one
            await self._connection.execute_fetchall("PRAGMA synchronous=NORMAL")
            await WalCheckpointer.hand_over(self._connection)
            self._checkpointer.start()
        return self._connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        self._turn.release()

    async def close(self) -> None:
        await self._checkpointer.stop()
        if self._connection is not None:
            await super().release(self._connection)
            self._connection = None


class ReusingSQLiteBackend(SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self._reusing_pool = _ReusingSQLitePool(self._database_url, **self._options)
        self._pool = self._reusing_pool
        self.statements = StatementCache()
        self.columns: dict[str, Any] = {}  # each statement's cursor description, by its SQL

    def connection(self) -> _CachingSQLiteConnection:
        return _CachingSQLiteConnection(self._pool, self._dialect, self.statements, self.columns)

    async def disconnect(self) -> None:
        await self._reusing_pool.close()
        await super().disconnect()


class AppDatabase(Database):
    """`databases.Database` with statements compiled once, and connections reused on SQLite too (asyncpg pools
    them already)."""

    SUPPORTED_BACKENDS = {  # noqa: RUF012  (the base class declares it as a plain mutable attribute)
        **Database.SUPPORTED_BACKENDS,
        "postgresql": "base.databases_internals:CachingPostgresBackend",
        "postgres": "base.databases_internals:CachingPostgresBackend",
        "sqlite": "base.databases_internals:ReusingSQLiteBackend",
    }

    async def write_then(
        self, first: ClauseElement, then: Callable[[interfaces.Record], Sequence[ClauseElement]]
    ) -> interfaces.Record | None:
        """In one transaction: `first`, which returns one row or none, and if it returned one, the statements
        `then` makes from it; that row. On SQLite outside a transaction, one trip to the connection's thread (see
        `_CachingSQLiteConnection.write_then`); otherwise the statements in a transaction (a savepoint when one is
        open already)."""
        connection = self.connection()
        if isinstance(self._backend, ReusingSQLiteBackend) and not connection._transaction_stack:
            async with connection, connection._query_lock:
                backend: Any = connection._connection  # `databases` types it as any backend's connection
                written: interfaces.Record | None = await backend.write_then(first, then)
                return written
        async with self.transaction():
            row = await self.fetch_one(first)
            if row is not None:
                for statement in then(row):
                    await self.execute(statement)
            return row
