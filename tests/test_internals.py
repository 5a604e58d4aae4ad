"""The two modules that use other libraries' internals refuse versions they were not written for, and the
behaviours they rely on hold with the installed versions (each pinned here or by the test named)."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from base.database import open_database
from base.sql import Prepared
from base.sqlite_checkpoints import LOG_SIZE_LIMIT_BYTES
from base.versions import require
from delivery.uvicorn_protocols import HttpProtocol, TextFrame, WebSocketProtocol, send_whole


def test_a_version_outside_the_written_range_stops_the_process_in_one_line() -> None:
    installed = version("uvicorn")
    require("uvicorn", installed, "999", module="here")  # inside: nothing happens
    with pytest.raises(SystemExit) as stopped:
        require("uvicorn", "999", "1000", module="delivery.uvicorn_protocols")
    message = str(stopped.value)
    assert "\n" not in message and installed in message and "delivery.uvicorn_protocols" in message


def test_uvicorns_protocol_hooks_we_override_still_exist() -> None:
    """What the subclasses override or call (their behaviour: tests/api/test_hostile.py's 414/431 and oversized
    heads, tests/presence/test_backpressure.py's writes of framed messages and cut slow clients)."""
    for name in ("data_received", "on_message_begin", "on_headers_complete"):
        assert callable(getattr(HttpProtocol, name))
    for name in ("data_received", "handle_events", "connection_made"):
        assert callable(getattr(WebSocketProtocol, name))
    assert TextFrame(b"{}").wire == b"\x81\x02{}"  # an unmasked text frame, as websockets serialises it


async def test_a_whole_response_is_written_in_one_write_and_a_closing_one_then_closes() -> None:
    """`send_whole` stands in for the cycle's transport while uvicorn's `send` frames the head and the body: what
    reaches the socket is one write of both (the socket here records its writes), a response to a
    `Connection: close` request closes after it, and a socket closed meanwhile is not written to."""
    for keep_alive in (True, False):
        transport = _RecordingTransport()
        cycle = _cycle(transport, keep_alive)
        await send_whole(cycle.send, 200, [(b"content-length", b"2")], b"{}")
        assert transport.writes == [
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n" + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n{}"
        ]
        assert cycle.response_complete and transport.closed is not keep_alive and cycle.transport is transport
    gone = _RecordingTransport()
    gone.closed = True  # closed while the response was being made: nothing is written to it, nothing raised
    await send_whole(_cycle(gone, keep_alive=True).send, 200, [(b"content-length", b"2")], b"{}")
    assert gone.writes == []


def _cycle(transport: _RecordingTransport, keep_alive: bool) -> RequestResponseCycle:
    """uvicorn's cycle for one GET, as its protocol makes one, on `transport`."""
    return RequestResponseCycle(
        scope={"type": "http", "method": "GET", "path": "/", "query_string": b"", "http_version": "1.1"},
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


class _RecordingTransport:
    """A socket's transport as far as uvicorn's cycle uses it: its writes and whether it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def test_a_prepared_statement_is_compiled_once_and_takes_each_calls_values(tmp_path: object) -> None:
    """The statement cache of `base/databases_internals.py`: one shape, many values, right rows each time."""
    database = open_database(f"sqlite:///{tmp_path}/internals.db")
    await database.connect()
    try:
        await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        table = sa.table("t", sa.column("id"), sa.column("name"))
        insert = table.insert().values(id=sa.bindparam("id"), name=sa.bindparam("name"))
        select = sa.select(table.c.name).where(table.c.id == sa.bindparam("id"))
        for i in range(3):
            await database.execute(Prepared(insert, {"id": i, "name": f"n{i}"}))
        names = [await database.fetch_val(Prepared(select, {"id": i})) for i in range(3)]
        assert names == ["n0", "n1", "n2"]
        rows = await asyncio.gather(*(database.fetch_one(Prepared(select, {"id": i})) for i in range(3)))
        assert [r["name"] for r in rows if r is not None] == ["n0", "n1", "n2"]
    finally:
        await database.disconnect()


async def test_a_write_then_its_rows_is_one_transaction_whatever_ends_it(tmp_path: object) -> None:
    """`AppDatabase.write_then` on SQLite (one trip to aiosqlite's thread): the second part sees the first's row,
    a failure between the parts undoes the first, a cancelled caller leaves all of it or none, and the connection
    is left usable."""
    database = open_database(f"sqlite:///{tmp_path}/internals.db")
    await database.connect()
    try:
        await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        await database.execute("CREATE TABLE log (t_id INTEGER NOT NULL, n INTEGER NOT NULL)")
        await database.execute("INSERT INTO t (id, n) VALUES (1, 0)")
        table = sa.table("t", sa.column("id"), sa.column("n"))
        log = sa.table("log", sa.column("t_id"), sa.column("n"))
        bump = table.update().where(table.c.id == sa.bindparam("id")).values(n=table.c.n + 1).returning(table.c.n)

        def logged(row: Any) -> list[Any]:
            return [log.insert().values(t_id=1, n=row["n"])]

        def failing(row: Any) -> list[Any]:
            raise ValueError("no")

        async def counts() -> tuple[Any, Any]:
            return await database.fetch_val("SELECT n FROM t"), await database.fetch_val("SELECT count(*) FROM log")

        written = await database.write_then(Prepared(bump, {"id": 1}), logged)
        assert written is not None and written["n"] == 1 and await counts() == (1, 1)
        assert await database.write_then(Prepared(bump, {"id": 2}), logged) is None  # matched nothing
        with pytest.raises(ValueError, match="no"):
            await database.write_then(Prepared(bump, {"id": 1}), failing)
        assert await counts() == (1, 1)
        cancelled = asyncio.create_task(database.write_then(Prepared(bump, {"id": 1}), logged))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await counts() in ((1, 1), (2, 2))  # all of it or none of it, by when the cancellation came
        assert (await database.write_then(Prepared(bump, {"id": 1}), logged) or {})["n"] in (2, 3)
        async with database.transaction():  # inside a transaction: part of it
            await database.write_then(Prepared(bump, {"id": 1}), logged)
        n, logs = await counts()
        assert logs == n
    finally:
        await database.disconnect()


async def test_the_write_ahead_log_is_checkpointed_beside_the_commits_not_inside_them(tmp_path: object) -> None:
    """The server's connection leaves checkpoints to the checkpointer (a commit that copied the log back was the
    slowest write of all), the log still reaches the database file while that connection stays open, and once it
    has, the log's file shrinks back to its limit instead of keeping the size of the largest burst."""
    path = Path(f"{tmp_path}/wal.db")
    log_path = Path(f"{path}-wal")
    database = open_database(f"sqlite:///{path}")
    await database.connect()
    insert = sa.text("INSERT INTO t (id, body) VALUES (:i, randomblob(:size))")
    try:
        await database.execute("PRAGMA journal_mode=WAL")
        assert await database.fetch_val("PRAGMA wal_autocheckpoint") == 0
        await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        for i in range(60):  # 60 commits of 100 KiB: past 1,000 pages, where a commit would have checkpointed
            await database.execute(insert.bindparams(i=i, size=102400))
        assert (await asyncio.to_thread(log_path.stat)).st_size > LOG_SIZE_LIMIT_BYTES
        async with asyncio.timeout(10):
            while (await asyncio.to_thread(path.stat)).st_size < 60 * 102400:
                await asyncio.sleep(0.05)
            i = 60
            while (await asyncio.to_thread(log_path.stat)).st_size > LOG_SIZE_LIMIT_BYTES:
                await database.execute(insert.bindparams(i=i, size=1))  # a write after a whole checkpoint restarts it
                i += 1
                await asyncio.sleep(0.05)
    finally:
        await database.disconnect()
