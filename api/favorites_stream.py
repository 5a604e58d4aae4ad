"""A customer's favorites, live: `GET /api/customer/favorites/stream` (Server-Sent Events) instead of polling.

On connect, a `snapshot` event with the favorites as `GET /api/customer/favorites` lists them; then a `favorite`
event each time one changes (online, offline with `last_seen`, added, renamed, members online) and a `removed`
event when one is removed or deleted. Each event carries an id; a client that reconnects with `Last-Event-ID`
(the header `EventSource` sends, or `?last_event_id=` for a new `EventSource`) is sent only what changed since,
or a new snapshot when that cannot be told (`dispatch/live_favorites.py`). A comment line every
`STREAM_KEEPALIVE_S` keeps proxies from closing an idle stream, and carries the stream's position.

`EventSource` cannot send an `Authorization` header, so the stream also accepts `?ticket=` from
`POST /api/customer/stream-tickets`: a token valid for this stream only and for a minute, so that what a URL
exposes (proxy logs, history) is worth little. Any client that can send headers may use its bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api import schemas
from api.auth import STREAM_TICKET_TTL_S, Principal, Role, mint_stream_ticket, verify_stream_ticket
from api.context import authenticate, caller, services
from api.endpoints import CUSTOMER, Endpoints
from api.etags import favorite_state
from api.favorites import favorite_entries
from api.responses import error_response, typed
from api.runtime import Services
from base.errors import Forbidden, InvalidToken, TooManyStreams, WorkshopNotFound
from delivery.uvicorn_protocols import on_stream_end
from dispatch.favorites import Favorite
from dispatch.live_favorites import Watch
from dispatch.mechanics import ProviderType

log = logging.getLogger(__name__)
endpoint = Endpoints()

STREAM_PATH = "/api/customer/favorites/stream"
MAX_STREAMS_PER_CUSTOMER = 10  # per process: a few devices and tabs, not a flood of idle streams
RETRY_MS = 2000  # what `EventSource` waits before reconnecting
_encode = msgspec.json.Encoder().encode


@endpoint(
    "post",
    "/api/customer/stream-tickets",
    "A one-minute ticket for the favorites stream's URL (`EventSource` cannot send an Authorization header).",
    CUSTOMER,
    response=schemas.StreamTicket,
    status=201,
    errors=(401, 403),
)
async def stream_ticket(request: Request) -> Response:
    ticket = mint_stream_ticket(str(services(request).settings.jwt_secret), caller(request))
    return typed(schemas.StreamTicket(ticket=ticket, expires_in_s=STREAM_TICKET_TTL_S), status_code=201)


@endpoint(
    "get",
    STREAM_PATH,
    "Your favorites, live (Server-Sent Events: `snapshot`, then `favorite` and `removed`); resumes from "
    "`Last-Event-ID`. Authenticate with the bearer header or `?ticket=`.",
    CUSTOMER,
    media_type="text/event-stream",
    errors=(401, 403, 429),
    query={
        "ticket": {"type": "string", "description": "From `POST /api/customer/stream-tickets`, instead of the header."},
        "last_event_id": {"type": "string", "description": "As the `Last-Event-ID` header, for a new `EventSource`."},
    },
    checks_its_caller=True,
)
async def favorites_stream(request: Request) -> Response:
    principal = _stream_caller(request)
    svc = services(request)
    if svc.live_favorites.streams_of(principal.sub) >= MAX_STREAMS_PER_CUSTOMER:
        raise TooManyStreams()
    resume_from = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return EventStream(svc, principal.sub, resume_from)


async def serve_stream(scope: Scope, receive: Receive, send: Send) -> None:
    """The stream as a plain ASGI endpoint (`api/app.py` hands it its GETs): it lives for hours, and Starlette's
    router, middlewares and `StreamingResponse` would keep a dozen coroutine frames and a task group with two tasks
    per stream. Errors are answered as the handlers do."""
    response = await _answer(Request(scope, receive))
    await response(scope, receive, send)


async def _answer(request: Request) -> Response:
    """The stream or the error; the request (its parsed headers and query) is not kept for the stream's life."""
    try:
        return await favorites_stream(request)
    except Exception as exc:  # noqa: BLE001 (what ServerErrorMiddleware would do: a JSON 500, logged)
        return await error_response(request, exc)


class EventStream(Response):
    """The stream's response: its events written straight to `send` as they come, until the client goes away or
    the server shuts down."""

    def __init__(self, svc: Services, customer_id: str, resume_from: str | None) -> None:
        # Not Response.__init__, which would declare the empty body's `content-length: 0`.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
        ]
        self._svc = svc
        self._customer_id = customer_id
        self._resume_from = resume_from

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        live = self._svc.live_favorites
        watch = live.open(self._customer_id)
        listener = None
        if not on_stream_end(scope, send, watch.end):
            listener = asyncio.ensure_future(_until_disconnected(receive, watch))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"retry: %d\n\n" % RETRY_MS, "more_body": True})
            try:
                async for event in _events(self._svc, watch, self._resume_from):
                    await send({"type": "http.response.body", "body": event, "more_body": True})
            except Exception:
                log.warning("a favorites stream ended on an error; its client reconnects", exc_info=True)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            live.close(watch)
            if listener is not None:
                listener.cancel()


async def _until_disconnected(receive: Receive, watch: Watch) -> None:
    """Under a server that does not say when a stream must end: until `http.disconnect`."""
    while (await receive())["type"] != "http.disconnect":
        pass
    watch.end()


def _stream_caller(request: Request) -> Principal:
    """The customer named by `?ticket=`, else by the bearer header."""
    ticket = request.query_params.get("ticket")
    if ticket is None:
        return authenticate(request, Role.CUSTOMER)
    try:
        principal = verify_stream_ticket(str(services(request).settings.jwt_secret), ticket)
    except InvalidToken as invalid:
        raise InvalidToken(f"The stream ticket is not valid ({invalid.message}): ask for a new one.") from None
    if principal.role is not Role.CUSTOMER:
        raise Forbidden("This needs the customer role.")
    return principal


def _event(kind: str, event_id: str, body: msgspec.Struct) -> bytes:
    return b"event: %s\nid: %s\ndata: %s\n\n" % (kind.encode(), event_id.encode(), _encode(body))


async def _events(svc: Services, watch: Watch, resume_from: str | None) -> AsyncIterator[bytes]:
    """A snapshot (or, resuming, what changed since), then each change, until the stream ends. The watch was
    registered before anything is read, so no change between the read and the first event is missed (one heard
    meanwhile is sent again, never lost)."""
    live = svc.live_favorites
    position = live.position()
    favorites = await _read(svc, watch)
    entries = await favorite_entries(svc, favorites)
    changed = live.changed_since(watch, resume_from) if resume_from else None
    if changed is None:
        yield _event("snapshot", position, schemas.Favorites(favorites=entries))
    else:
        for entry in entries:
            if await _touched(svc, entry, changed):
                yield _event("favorite", position, entry)
        yield b"id: %s\n\n" % position.encode()  # caught up, even when nothing changed
    sent = {entry.provider_id: favorite_state(entry) for entry in entries}
    while not watch.ended:
        if not await _woken(watch, svc.settings.stream_keepalive_s):
            yield b": keepalive\nid: %s\n\n" % live.position().encode()
            continue
        if watch.ended:
            return
        position = live.position()
        changed, reread = watch.take()
        if reread:
            favorites = await _read(svc, watch)
        entries = await favorite_entries(svc, favorites)
        for entry in entries:
            state = favorite_state(entry)
            if sent.get(entry.provider_id) != state:
                sent[entry.provider_id] = state
                yield _event("favorite", position, entry)
        for gone in set(sent) - {entry.provider_id for entry in entries}:
            del sent[gone]
            removed = schemas.FavoriteRemoved(provider_id=gone, reason=await _why_gone(svc, gone))
            yield _event("removed", position, removed)


async def _read(svc: Services, watch: Watch) -> list[Favorite]:
    """The customer's favorites, and from now on a wake-up for any change of them or their workshops' members."""
    favorites = await svc.favorites.list(watch.customer_id)
    subjects = {f.provider_id for f in favorites}
    for favorite in favorites:
        if favorite.provider_type == ProviderType.WORKSHOP:
            with contextlib.suppress(WorkshopNotFound):
                subjects.update((await svc.workshops.get(favorite.provider_id)).member_ids)
    svc.live_favorites.follow(watch, frozenset(subjects))
    return favorites


async def _touched(svc: Services, entry: schemas.Favorite, changed: set[str]) -> bool:
    """Whether a mechanic of `changed` is this favorite or one of its workshop's members."""
    if entry.provider_id in changed:
        return True
    if entry.provider_type != ProviderType.WORKSHOP:
        return False
    try:
        return not changed.isdisjoint((await svc.workshops.get(entry.provider_id)).member_ids)
    except WorkshopNotFound:
        return False


async def _woken(watch: Watch, keepalive_s: float) -> bool:
    """Until something the stream watches changed, or it must end (True), or `keepalive_s` passed quietly (False).
    A timer that sets the stream's own event, not `asyncio.timeout`: its `TimeoutError` and traceback form a
    reference cycle, and one per idle stream at every keepalive kept the collector's full passes (hundreds of
    milliseconds with 10,000 streams open) running every few seconds."""
    due = asyncio.get_running_loop().call_later(keepalive_s, watch.wake.set)
    try:
        await watch.wake.wait()
    finally:
        due.cancel()
    if watch.has_news:
        return True
    watch.wake.clear()
    return False


async def _why_gone(svc: Services, provider_id: str) -> str:
    """`deleted` when the mechanic or workshop no longer exists, else `removed` (by the customer)."""
    if await svc.mechanics.get_many([provider_id]):
        return "removed"
    try:
        await svc.workshops.get(provider_id)
    except WorkshopNotFound:
        return "deleted"
    return "removed"
