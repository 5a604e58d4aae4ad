"""`Idempotency-Key` on the POSTs that create something (Stripe's convention), read at the HTTP edge.

A key is per caller and is kept 24 hours with the fingerprint of the method, path and body it first came with:
the same key with another body is 422 `idempotency_key_reused`. A booking's key is stored in the booking's own
statement (`dispatch/idempotency.py`), so a retry after any failure or crash is answered with the booking it made
(its current view, the original 201 and `Idempotent-Replayed: true`), or books it if nothing was stored. A
checkout's key goes to Stripe as Stripe's own idempotency key: a retry gets the same Checkout Session.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request

from api.responses import read_body
from base.errors import InvalidInput
from dispatch.idempotency import IdempotencyKey

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255
REPLAYED = {"Idempotent-Replayed": "true"}


async def idempotency_key(request: Request, owner: str, max_body_bytes: int) -> IdempotencyKey | None:
    """The request's key with its fingerprint, None without one; InvalidInput for a malformed key."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.")
    body = await read_body(request, max_body_bytes)
    fingerprint = hashlib.sha256(b"\0".join((request.method.encode(), request.url.path.encode(), body))).hexdigest()
    return IdempotencyKey(owner=owner, key=key, fingerprint=fingerprint)


def namespaced(key: IdempotencyKey) -> str:
    """The key as sent to another service, which compares the request's parameters itself: per caller, and
    within its length limit (Stripe's is 255)."""
    return hashlib.sha256(f"{key.owner}\0{key.key}".encode()).hexdigest()
