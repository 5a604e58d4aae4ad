"""SQLite's WAL checkpoints, taken off the writes' path.

By default the connection whose commit takes the write-ahead log past 1,000 pages copies it back into the database
there and then, two fsyncs inside that commit. With the server's writes that was every couple of hundred commits,
and they were the slowest of all: a fallback whose commit ran one reached its mechanics 5-8 ms late instead of 2
(measured: the commit's trip to SQLite's thread took 4-8 ms instead of 0.15). The server's connection turns that
off and a connection of its own, on its own thread, checkpoints every `CHECKPOINT_EVERY_S` instead. A passive
checkpoint waits for no one, and writers go on appending to the log meanwhile.

SQLite keeps the log's file at the largest it ever grew and reuses it from the start: with nine workers writing to
one file (100,000 mechanics' `last_seen` flushes) the log reached 361 MB, and the file stayed that size after the
log restarted. The server's connection therefore also sets `journal_size_limit`: the first commit after a restart
cuts the file back to `LOG_SIZE_LIMIT_BYTES` (or to that commit's own size, if larger).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 1.0
LOG_SIZE_LIMIT_BYTES = 4 * 2**20  # about SQLite's own checkpoint threshold (1,000 pages of 4 KiB)


class WalCheckpointer:
    def __init__(self, database: str, options: dict[str, Any], every_s: float = CHECKPOINT_EVERY_S) -> None:
        """`database` and `options`: as the server's connection is opened with (an in-memory database has no log,
        and its checkpoints do nothing)."""
        self._database = database
        self._options = options
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    async def hand_over(connection: aiosqlite.Connection) -> None:
        """Stop `connection`'s commits from checkpointing (the checkpointer does it), and let its writes cut the
        log's file back when they restart it."""
        await connection.execute_fetchall("PRAGMA wal_autocheckpoint=0")
        await connection.execute_fetchall(f"PRAGMA journal_size_limit={LOG_SIZE_LIMIT_BYTES}")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-wal-checkpoints")

    async def stop(self) -> None:
        """A last checkpoint is the last connection's to make: SQLite does it when the file is closed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """Never ends by a failure: with the commits' own checkpoints off, a checkpointer that stopped would let
        the log grow without bound."""
        while True:
            try:
                async with aiosqlite.connect(self._database, isolation_level=None, **self._options) as connection:
                    while True:
                        await asyncio.sleep(self._every_s)
                        await connection.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as error:  # noqa: BLE001  (a full disk, a file gone, a closed thread: try again)
                log.warning("SQLite checkpoint failed (%s); retrying in %.0f s", error, self._every_s)
                await asyncio.sleep(self._every_s)
