"""What committed changes still owe the sockets, driven until Redis takes it.

Redis side effects run after the database commits, and Redis can fail in between (a restart, a failover, a
primary lost mid-publish); a process can die there too. So every change that devices must hear of marks its
request `owed_at` in the same statement (`dispatch/changes.py`), and the mark is cleared only once its frames were
published. Nothing else is recorded: what a request owes is derived from its state (`Dispatcher.redeliver`),
which the database already holds, rather than copied into an outbox that would have to agree with it.

- The use case publishes at once; on success the mark is cleared with the next batch, one statement every
  `RETRY_S` at most; on a failure this process retries from the request's state every `RETRY_S` until Redis
  takes it.
- Any process re-delivers a request owed for longer than `GRACE_S` (its process died before publishing or
  settling). It claims the request first by moving `owed_at` to now, so processes do not all deliver it.

Delivery is at least once: a frame may reach a device twice after a fault (offers are deduplicated per topic and
attempt by the hub; `accepted`, `offer_revoked` and the like may repeat, and apps treat them as idempotent).
What pub/sub drops while a process's listener is away is repaired on the other side: that process greets its
sockets again when its listener rejoins (`dispatch.devices`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from base.clock import utc_now
from dispatch.models import SessionRequest
from dispatch.requests import Requests

log = logging.getLogger(__name__)

RETRY_S = 0.25  # this process's failed deliveries are retried, and its delivered marks cleared, this often
POLL_S = 1.0  # how often every process looks for deliveries left owed by another
GRACE_S = 2.0  # a request owed this long was left by its process (a publish takes milliseconds)
BATCH = 200

Redeliver = Callable[[SessionRequest], Awaitable[None]]


class Owed:
    """This process's ledger: deliveries done (to clear) and deliveries that failed (to retry)."""

    def __init__(self) -> None:
        self._delivered: dict[str, datetime] = {}
        self._failed: set[str] = set()
        self.changed = asyncio.Event()

    def delivered(self, request: SessionRequest) -> None:
        """Its frames are published: clear its mark (unless a later change marked it again), with the next batch
        (no hurry: other processes leave a mark alone for `GRACE_S`)."""
        if request.owed_at is not None:
            self._delivered[request.id] = request.owed_at

    @property
    def has_delivered(self) -> bool:
        return bool(self._delivered)

    def failed(self, request: SessionRequest) -> None:
        """Publishing failed: retry from the request's state, soon and from here."""
        self.retry((request.id,))

    def retry(self, request_ids: Iterable[str]) -> None:
        self._failed.update(request_ids)
        self.changed.set()

    def take_delivered(self) -> dict[str, datetime]:
        taken, self._delivered = self._delivered, {}
        return taken

    def give_back_delivered(self, delivered: dict[str, datetime]) -> None:
        """Clearing failed: clear them on the next round (a newer mark recorded meanwhile wins)."""
        self._delivered = {**delivered, **self._delivered}

    def take_failed(self) -> set[str]:
        taken, self._failed = self._failed, set()
        return taken


class OwedDriver:
    """Drives every owed delivery until it is done: this process's failures at once, other processes' leftovers
    after `GRACE_S`."""

    def __init__(self, owed: Owed, requests: Requests, redeliver: Redeliver, *, grace_s: float = GRACE_S) -> None:
        self._owed = owed
        self._requests = requests
        self._redeliver = redeliver
        self._grace = timedelta(seconds=grace_s)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = 0.0
        while True:
            self._owed.changed.clear()
            delivered = self._owed.take_delivered()
            if delivered and not await self._attempt("clearing delivered marks", self._requests.settle(delivered)):
                self._owed.give_back_delivered(delivered)
            failed = self._owed.take_failed()
            if failed and not await self._attempt("retrying deliveries", self._retry(failed)):
                self._owed.retry(failed)
            if loop.time() >= next_poll:
                next_poll = loop.time() + POLL_S
                await self._attempt("re-delivering other processes' leftovers", self._claim_leftovers())
            wait_s = max(0.0, next_poll - loop.time())
            if failed or self._owed.has_delivered:
                wait_s = min(wait_s, RETRY_S)
            if failed:
                # A retry that failed posted itself again just now: wait the retry period, never spin on it.
                self._owed.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._owed.changed.wait()

    @staticmethod
    async def _attempt(what: str, step: Awaitable[None]) -> bool:
        """False when the step failed (the database away): logged, and tried again on a later round."""
        try:
            await step
        except Exception as error:  # noqa: BLE001  (never a dead loop)
            log.warning("owed deliveries: %s failed (%r); retrying", what, error)
            return False
        return True

    async def _retry(self, request_ids: set[str]) -> None:
        for request in await self._requests.owed(request_ids):
            await self._redeliver(request)

    async def _claim_leftovers(self) -> None:
        now = utc_now()
        for request in await self._requests.claim_owed(now - self._grace, now, BATCH):
            await self._redeliver(request)
