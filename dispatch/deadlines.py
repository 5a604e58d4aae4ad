"""The deadline keeper: makes every priority window and ack deadline fire on time, whatever else happens.

Redis fires a key's `expired` event only when it happens to find the key expired: beside many other keys with
TTLs that can be minutes late. So the database holds each deadline, and every process runs this keeper:

1. It polls the database for deadlines in the next few seconds (and is woken at once when this process arms
   one), and schedules a timer for each.
2. At a window's deadline it touches the window key. Redis finds it expired and fires the `expired` event
   within milliseconds; every process hears it and calls `fall_back`, and the database lets one of them win.
3. `GRACE_S` later it calls `fall_back` itself, which does nothing if the event already did its work. This
   covers a lost event, a Redis that lost its keys, and a Redis that refuses keyspace notifications (then the
   keeper falls back at the deadline itself).
4. At start-up and whenever the pub/sub connection comes back, it rebuilds the window keys from the database;
   deadlines that passed while no process was running fall back at once.

Ack deadlines need no Redis key: at each one the keeper asks the dispatcher to resend or fall back, and the
database again lets exactly one process act.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from databases import Database

from dispatch.dispatcher import Dispatcher
from dispatch.models import FallbackReason, Phase, Status
from dispatch.tables import session_requests as sr
from presence.bus import Bus
from presence.clock import as_utc, utc_now

log = logging.getLogger(__name__)

POLL_S = 0.25
HORIZON_S = 5.0
GRACE_S = 0.25
TOUCH_RETRIES = 20
BATCH = 1000


class DeadlineKeeper:
    def __init__(self, database: Database, dispatcher: Dispatcher, bus: Bus) -> None:
        self._db = database
        self._dispatcher = dispatcher
        self._bus = bus
        self._scheduled: set[tuple[str, str, int, int]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.expiry_events_enabled = False
        bus.subscribe(bus.expired_channel, self._on_expired)
        bus.on_reconnect(self.recover)

    async def recover(self) -> None:
        """Re-enable expiry events and rebuild window keys from the database (overdue ones fall back now)."""
        self.expiry_events_enabled = await self._bus.enable_expiry_events()
        count = await self._dispatcher.rearm_windows()
        if count:
            log.info("re-armed %d priority windows from the database", count)

    async def run(self) -> None:
        await self.recover()
        changed = self._dispatcher.deadlines_changed
        while True:
            changed.clear()
            try:
                await self._schedule_upcoming()
            except Exception:
                log.exception("deadline poll failed; retrying")
            try:
                await asyncio.wait_for(changed.wait(), POLL_S)
            except TimeoutError:
                pass

    async def _schedule_upcoming(self) -> None:
        horizon = utc_now() + timedelta(seconds=HORIZON_S)
        open_priority = (sr.c.status == Status.PENDING.value, sr.c.phase == Phase.PRIORITY.value)
        windows = await self._db.fetch_all(
            sa.select(sr.c.id, sr.c.attempt, sr.c.priority_deadline)
            .where(*open_priority, sr.c.priority_deadline <= horizon)
            .order_by(sr.c.priority_deadline)
            .limit(BATCH)
        )
        acks = await self._db.fetch_all(
            sa.select(sr.c.id, sr.c.attempt, sr.c.ack_deadline, sr.c.offer_resends)
            .where(*open_priority, sr.c.offer_acked_at.is_(None), sr.c.ack_deadline <= horizon)
            .order_by(sr.c.ack_deadline)
            .limit(BATCH)
        )
        for row in windows:
            self._schedule("window", str(row["id"]), row["attempt"], 0, as_utc(row["priority_deadline"]).timestamp())
        for row in acks:
            self._schedule(
                "ack", str(row["id"]), row["attempt"], row["offer_resends"], as_utc(row["ack_deadline"]).timestamp()
            )

    def _schedule(self, kind: str, request_id: str, attempt: int, resends: int, due_epoch: float) -> None:
        token = (kind, request_id, attempt, resends)
        if token in self._scheduled:
            return
        self._scheduled.add(token)
        delay = max(0.0, due_epoch - utc_now().timestamp())
        task = asyncio.create_task(self._fire(token, delay), name=f"deadline-{kind}-{request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire(self, token: tuple[str, str, int, int], delay: float) -> None:
        kind, request_id, attempt, _ = token
        try:
            await asyncio.sleep(delay)
            if kind == "window":
                await self._close_window(request_id, attempt)
            else:
                await self._dispatcher.resend_or_fall_back(request_id, attempt)
        except Exception:
            log.exception("deadline %s for %s failed; the next poll retries it", kind, request_id)
        finally:
            self._scheduled.discard(token)

    async def _close_window(self, request_id: str, attempt: int) -> None:
        if self.expiry_events_enabled:
            # Touching an expired key makes Redis delete it and fire `expired` now rather than whenever. Timers
            # may wake a hair early, and the key expires on the millisecond after the deadline: touch until gone.
            for _ in range(TOUCH_RETRIES):
                if not await self._dispatcher.touch_window(request_id, attempt):
                    break
                await asyncio.sleep(0.001)
            await asyncio.sleep(GRACE_S)
        await self._dispatcher.fall_back(request_id, attempt, FallbackReason.WINDOW)

    async def _on_expired(self, key: str) -> None:
        parsed = self._dispatcher.keys.parse_window(key)
        if parsed is None:
            return
        request_id, attempt = parsed
        # Off the pub/sub loop: deliveries must not queue behind a database write.
        task = asyncio.create_task(self._dispatcher.fall_back(request_id, attempt, FallbackReason.WINDOW))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
