"""The deadline keeper: makes every priority window and ack deadline fire on time, whatever else happens.

Redis fires a key's `expired` event only when it happens to find the key expired: beside many other keys with
TTLs that can be minutes late. So the database holds each deadline, and every process runs this keeper:

1. A deadline armed here (a booking, an offer marked sent, a resend) is scheduled at once from memory, and sent
   to the other processes in a note on the `deadlines` channel, which schedule it the same way: no database
   read per booking. A deadline met here (an ack, an accept, a fallback, a cancel) is dropped the same way, in
   the same notes, so that an acked offer costs no process a database write at its ack deadline. Every
   `IDLE_POLL_S` the keeper also reads the database for deadlines in the next `HORIZON_S` seconds, a safety
   net for lost notes and restarts that costs no queries to speak of.
2. At a window's deadline the timer calls `fall_back` once; the database lets one process win. A window's key
   `expired` event is acted on only by a process that holds no timer for it (it armed the window after this
   process last read), so in the common case each process tries a fallback once, not twice.
3. At start-up and whenever a pub/sub connection comes back, it rebuilds the window keys from the database;
   deadlines that passed while no process was running fall back at once.

Ack deadlines need no Redis key: at each one the keeper asks the dispatcher to resend or fall back, and the
database again lets exactly one process act.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import astuple
from datetime import timedelta
from typing import Any

from base.clock import utc_now
from delivery.bus import Bus
from dispatch.deadlines import Clock, Deadline, Deadlines

log = logging.getLogger(__name__)

IDLE_POLL_S = 2.0
HORIZON_S = 5.0
BATCH = 1000


class DeadlineKeeper:
    def __init__(self, deadlines: Deadlines, bus: Bus, channel: str) -> None:
        self._deadlines = deadlines
        self._bus = bus
        self._channel = channel
        self._scheduled: set[tuple[str, str, int, int]] = set()
        self._asleep: dict[Clock, dict[int, asyncio.Task[None]]] = {}  # timers not yet due, by resends
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_poll = 0.0  # loop time of the next safety-net read of the database
        self._signature = uuid.uuid4().hex  # this process's notes, which it need not hear back
        bus.subscribe_expired(self._on_expired)
        bus.subscribe(channel, self._on_note)
        bus.on_reconnect(self.recover)

    async def recover(self) -> None:
        """Rebuild window keys from the database (overdue ones fall back now)."""
        count = await self._deadlines.rearm_windows()
        if count:
            log.info("re-armed %d priority windows from the database", count)
        self._next_poll = 0.0  # and read every upcoming deadline again

    async def run(self) -> None:
        await self.recover()
        board = self._deadlines.board
        loop = asyncio.get_running_loop()
        this_task = asyncio.current_task()
        assert this_task is not None
        while True:
            if this_task.cancelling():
                # A cancellation that reached this task during a Redis call and was swallowed below it (seen with
                # redis-py on Python 3.11: the publish returned and the task, still "cancelling", carried on, so a
                # shutdown awaiting it waited out its bound and a test awaiting it hung): honoured here.
                raise asyncio.CancelledError
            board.changed.clear()
            armed, met = board.take()
            if armed or met:
                for deadline in armed:
                    self._schedule(deadline)
                self._drop(met)
                try:
                    await self._bus.publish(self._channel, self._note(armed, met))
                except Exception as error:  # noqa: BLE001  (Redis away: their polls find them)
                    log.warning("could not tell other processes of deadlines armed or met (%r)", error)
            if loop.time() >= self._next_poll:
                self._next_poll = loop.time() + IDLE_POLL_S
                try:
                    await self._schedule_upcoming()
                except Exception:
                    log.exception("deadline poll failed; retrying")
            if not board.changed.is_set():
                # `asyncio.timeout`, not `wait_for`, which on Python 3.11 swallows a cancellation that arrives as
                # the event is set.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._next_poll - loop.time())):
                        await board.changed.wait()

    def _note(self, armed: list[Deadline], met: list[Clock]) -> str:
        return json.dumps({"from": self._signature, "deadlines": [astuple(d) for d in armed], "met": met})

    async def _on_note(self, data: str) -> None:
        try:
            note = json.loads(data)
            if note["from"] == self._signature:
                return
            deadlines = [Deadline(str(k), str(r), int(a), int(n), float(d)) for k, r, a, n, d in note["deadlines"]]
            met = [(str(k), str(r), int(a)) for k, r, a in note.get("met", ())]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed deadline note: %.200r", data)
            return
        for deadline in deadlines:
            self._schedule(deadline)
        self._drop(met)

    async def _schedule_upcoming(self) -> None:
        horizon = utc_now() + timedelta(seconds=HORIZON_S)
        for deadline in await self._deadlines.due_before(horizon, BATCH):
            self._schedule(deadline)

    def _schedule(self, deadline: Deadline) -> None:
        token = (deadline.kind, deadline.request_id, deadline.attempt, deadline.resends)
        if token in self._scheduled:
            return
        self._scheduled.add(token)
        task = asyncio.create_task(
            self._fire(token, deadline.due_epoch), name=f"deadline-{deadline.kind}-{deadline.request_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._asleep.setdefault(deadline.clock, {})[deadline.resends] = task

    def _drop(self, met: list[Clock]) -> None:
        """Cancel the timers of deadlines met before they fell due (a timer already acting is left to finish)."""
        for clock in met:
            for task in self._asleep.pop(clock, {}).values():
                task.cancel()

    async def _fire(self, token: tuple[str, str, int, int], due_epoch: float) -> None:
        kind, request_id, attempt, resends = token
        try:
            # Timers may wake up to a millisecond early (uvloop counts whole milliseconds, on the monotonic clock),
            # and the database compares `deadline <= now` on the wall clock: never act before the deadline.
            while (remaining_s := due_epoch - utc_now().timestamp()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
                await asyncio.sleep(remaining_s)
            self._wake((kind, request_id, attempt), resends)
            if kind == "window":
                await self._deadlines.close_window(request_id, attempt)
            else:
                await self._deadlines.resend_or_fall_back(request_id, attempt)
        except Exception:
            log.exception("deadline %s for %s failed; the next poll retries it", kind, request_id)
        finally:
            self._scheduled.discard(token)

    def _wake(self, clock: Clock, resends: int) -> None:
        timers = self._asleep.get(clock, {})
        timers.pop(resends, None)
        if not timers:
            self._asleep.pop(clock, None)

    async def _on_expired(self, key: str) -> None:
        parsed = self._deadlines.window_of(key)
        if parsed is None:
            return
        request_id, attempt = parsed
        if ("window", request_id, attempt, 0) in self._scheduled:
            return  # this process's timer falls back at the deadline itself
        # Off the pub/sub loop: deliveries must not queue behind a database write.
        task = asyncio.create_task(self._deadlines.close_window(request_id, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
