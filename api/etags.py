"""Conditional GET for the pollers that stay: a weak `ETag` naming what a status says, and `304 Not Modified`
when the caller's copy still says it.

The tag is drawn from what the answer means, not from its bytes: an online mechanic's `last_seen` is "now" and an
offline one's `last_seen_seconds` grows every second, so the bytes change on every poll while the status does not.
Hence a weak tag (RFC 9110 §8.8.1): a 304 says the caller's copy is equivalent, and its `last_seen_seconds` is as
old as the copy (count from `last_seen`). Computing it costs a `repr` and an 8-byte BLAKE2b of a few fields.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable

from starlette.requests import HTTPConnection
from starlette.responses import Response

from api import schemas
from api.responses import JSONAnswer


@functools.lru_cache(maxsize=4096)
def etag_of(*parts: object) -> str:
    """A weak tag for these fields (str, int, bool, None and tuples of them: their `repr` is the same in every
    process, unlike their `hash`). The latest are kept, found by equality: a mechanic's status says the same thing
    poll after poll (each field keeps one type, so `True` and `1`, equal to the cache, never stand in one place)."""
    return f'W/"{hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()}"'


def mechanic_state(status: schemas.MechanicStatus) -> tuple[object, ...]:
    return (
        status.mechanic_id,
        status.name,
        status.is_online,
        None if status.is_online else status.last_seen,
        status.priority_booking,
    )


def favorite_state(favorite: schemas.Favorite) -> tuple[object, ...]:
    """What a favorite's card shows, but the ever-moving times (an online one's `last_seen` is now): what the live
    stream compares to decide whether a change is worth an event, and the favorites list's tag."""
    return (
        favorite.provider_id,
        favorite.provider_type,
        favorite.name,
        favorite.booking_count,
        favorite.created_at,
        favorite.is_online,
        None if favorite.is_online else favorite.last_seen,
        tuple(favorite.online_members or ()),
    )


def still_fresh(connection: HTTPConnection, etag: str) -> bool:
    """Whether the request's `If-None-Match` names `etag` (or is `*`), compared weakly as GET's is."""
    header = connection.headers.get("if-none-match")
    if header is None:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


def conditional(
    connection: HTTPConnection, states: Iterable[tuple[object, ...]], body: Callable[[], bytes]
) -> Response:
    """A JSON answer tagged by `states`; 304 with no body (not even encoded) when the caller's copy has that tag."""
    etag = etag_of(*states)
    head = [(b"etag", etag.encode())]
    if still_fresh(connection, etag):
        return JSONAnswer(304, b"", head)
    return JSONAnswer(200, body(), head)
