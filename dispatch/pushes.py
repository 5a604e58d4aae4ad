"""Web Push to a favorite's devices, for the offers a socket cannot carry: the favorite is offline.

Mechanics' apps register push subscriptions (a browser's `PushSubscription`: an endpoint on the browser vendor's
push service and the keys to encrypt for it). A request reaches each device at most once: the process that
inserts its `push_deliveries` row sends it, whichever process that is. A failure is retried twice with
backoff (the product document's "retry notification 2×"); a push service answering 404 or 410 has dropped the
subscription, and so do we. Each push, its outcome and each removal go to the request's event log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa
from databases import Database
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from base.clock import iso, utc_now
from base.errors import PushEndpointTaken
from base.sql import insert_ignoring_conflict
from dispatch.changes import Note
from dispatch.metrics import PUSHES_SENT
from dispatch.models import EventKind, SessionRequest
from dispatch.requests import Requests
from dispatch.tables import push_deliveries, push_subscriptions
from dispatch.wording import DEFAULT_CUSTOMER_NAME

log = logging.getLogger(__name__)

TITLE = "Priority Request from Your Favorite Customer!"
RETRIES = 2  # after the first attempt
PUSHES_AT_ONCE = 64  # a process's pushes in flight (each device its own), whatever the number of requests


@dataclass(frozen=True)
class Subscription:
    id: str
    mechanic_id: str
    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True)
class Push:
    """One notification: its payload (JSON text), how long the push service may hold it, and the topic under
    which a later push replaces it rather than stacking."""

    payload: str
    ttl_s: int
    topic: str
    urgency: str = "high"


class PushRefused(Exception):
    """The push service answered an error status; 404 and 410 mean the subscription is gone."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status

    @property
    def is_gone(self) -> bool:
        return self.status in (404, 410)

    @property
    def is_worth_retrying(self) -> bool:
        return self.status == 429 or self.status >= 500


class PushSender(Protocol):
    """Delivers one encrypted, VAPID-signed push to a push service (RFC 8030/8291/8292); raises PushRefused for
    an error status and OSError or TimeoutError when the service cannot be reached."""

    async def send(self, subscription: Subscription, push: Push) -> None: ...


class Retryable(Exception):
    """A failure worth another try: a 5xx or 429, or the push service out of reach."""


class PushSubscriptions:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def save(self, mechanic_id: str, endpoint: str, p256dh: str, auth: str) -> bool:
        """Store a device's subscription; True when it is new. The same mechanic's endpoint again replaces its
        keys (a browser that resubscribed). An endpoint belongs to the mechanic who registered it first: another's
        registration of it is refused (PushEndpointTaken), or knowing a URL would be enough to take its pushes."""
        table = push_subscriptions
        inserted = await self._db.fetch_one(
            insert_ignoring_conflict(self._db, table)
            .values(
                id=str(uuid.uuid4()),
                mechanic_id=mechanic_id,
                endpoint=endpoint,
                p256dh=p256dh,
                auth=auth,
                created_at=utc_now(),
            )
            .returning(table.c.id)
        )
        if inserted is None:
            updated = await self._db.fetch_one(
                table.update()
                .where(table.c.endpoint == endpoint, table.c.mechanic_id == mechanic_id)
                .values(p256dh=p256dh, auth=auth)
                .returning(table.c.id)
            )
            if updated is None:
                raise PushEndpointTaken()
        return inserted is not None

    async def remove(self, mechanic_id: str, endpoint: str) -> None:
        """Idempotent; only the mechanic's own subscription."""
        await self._db.execute(
            push_subscriptions.delete().where(
                push_subscriptions.c.mechanic_id == mechanic_id, push_subscriptions.c.endpoint == endpoint
            )
        )

    async def of(self, mechanic_ids: tuple[str, ...]) -> list[Subscription]:
        if not mechanic_ids:
            return []
        rows = await self._db.fetch_all(
            sa.select(push_subscriptions).where(push_subscriptions.c.mechanic_id.in_(list(mechanic_ids)))
        )
        return [Subscription(str(r["id"]), str(r["mechanic_id"]), r["endpoint"], r["p256dh"], r["auth"]) for r in rows]

    async def claim(self, request_id: str, subscription_id: str) -> bool:
        """True for the one caller, on any process, that is to push this request to this device."""
        claimed = await self._db.fetch_one(
            insert_ignoring_conflict(self._db, push_deliveries)
            .values(request_id=request_id, subscription_id=subscription_id, at=utc_now())
            .returning(push_deliveries.c.request_id)
        )
        return claimed is not None

    async def drop(self, subscription_id: str) -> None:
        await self._db.execute(push_subscriptions.delete().where(push_subscriptions.c.id == subscription_id))


class Pushes:
    def __init__(
        self,
        subscriptions: PushSubscriptions,
        requests: Requests,
        sender: PushSender | None,
        retry_base_s: float,
    ) -> None:
        self.subscriptions = subscriptions
        self._requests = requests
        self._sender = sender  # None: WEB_PUSH=off
        self._retry_base_s = retry_base_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._at_once = asyncio.Semaphore(PUSHES_AT_ONCE)

    def notify_later(self, request: SessionRequest, mechanic_ids: tuple[str, ...]) -> None:
        """Push to every device of these mechanics, off the caller's path (a booking does not wait on push
        services)."""
        if self._sender is None or not mechanic_ids:
            return
        task = asyncio.create_task(self.notify(request, mechanic_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def notify(self, request: SessionRequest, mechanic_ids: tuple[str, ...]) -> None:
        """Every device at once, each on its own: one device's retries, backoff or hanging push service never
        delay another's first push (each attempt is bounded by the sender's timeouts)."""
        if self._sender is None:
            return
        push = Push(payload=offer_payload(request), ttl_s=_seconds_left(request), topic=request.id.replace("-", ""))
        subscriptions = await self.subscriptions.of(mechanic_ids)
        outcomes = await asyncio.gather(
            *(self._claim_and_deliver(request, s, push) for s in subscriptions), return_exceptions=True
        )
        for failure in (o for o in outcomes if isinstance(o, Exception)):
            log.warning("push for request %s could not be recorded: %r", request.id, failure)

    async def _claim_and_deliver(self, request: SessionRequest, subscription: Subscription, push: Push) -> None:
        async with self._at_once:
            if await self.subscriptions.claim(request.id, subscription.id):
                await self._deliver(request, subscription, push)

    async def _deliver(self, request: SessionRequest, subscription: Subscription, push: Push) -> None:
        assert self._sender is not None
        sender = self._sender
        host = urlsplit(subscription.endpoint).hostname or "?"

        async def attempt() -> None:
            try:
                await sender.send(subscription, push)
            except PushRefused as refused:
                if refused.is_worth_retrying:
                    raise Retryable(str(refused)) from refused
                raise
            except (OSError, TimeoutError) as unreachable:
                raise Retryable(f"unreachable: {unreachable!r}") from unreachable

        retrying = AsyncRetrying(
            stop=stop_after_attempt(1 + RETRIES),
            wait=wait_exponential(multiplier=self._retry_base_s),
            retry=retry_if_exception_type(Retryable),
        )
        try:
            await retrying(attempt)
        except PushRefused as refused:
            if refused.is_gone:
                await self.subscriptions.drop(subscription.id)
                await self._log(request, subscription, "gone", f"subscription removed: {host} answered {refused}")
            else:
                await self._log(request, subscription, "failed", f"refused by {host}: {refused}")
        except RetryError as exhausted:
            cause = exhausted.last_attempt.exception()
            await self._log(request, subscription, "failed", f"failed after {1 + RETRIES} tries to {host}: {cause}")
        else:
            await self._log(request, subscription, "sent", f"sent to {host}")

    async def _log(self, request: SessionRequest, subscription: Subscription, outcome: str, detail: str) -> None:
        PUSHES_SENT.labels(outcome=outcome).inc()
        if outcome != "sent":
            log.warning("push for request %s: %s", request.id, detail)
        await self._requests.log(request.id, Note(EventKind.PUSHED, subscription.mechanic_id, request.attempt, detail))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _seconds_left(request: SessionRequest) -> int:
    if request.priority_deadline is None:
        return 0
    return max(0, int((request.priority_deadline - utc_now()).total_seconds()))


def offer_payload(request: SessionRequest) -> str:
    """The notification as the product document words it, with what the app needs to open the offer."""
    customer = request.customer_name or DEFAULT_CUSTOMER_NAME
    return json.dumps(
        {
            "title": TITLE,
            "body": f"{customer} wants to book with you",
            "request_id": request.id,
            "expires_at": iso(request.priority_deadline),
            "url": f"/console/mechanic/?offer={request.id}",
        }
    )
