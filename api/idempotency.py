"""`Idempotency-Key` on the POSTs that create something (Stripe's convention).

The first request with a key claims it in the database before it runs, so two concurrent retries cannot both run
(the second is told 409 `idempotency_key_in_use`). Its answer is stored with the key; the same key with the same
method, path and body within 24 hours gets that answer again (with `Idempotent-Replayed: true`), the same key
with another body is 422 `idempotency_key_reused`. A request refused before it could do anything (a validation
error, a conflict) releases its key, so the client can correct it and retry with the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request
from starlette.responses import Response

from api.responses import read_body
from base.clock import utc_now
from base.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidInput
from dispatch.sql import insert_ignoring_conflict
from dispatch.tables import idempotency_keys as keys

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255
KEPT_FOR = timedelta(hours=24)


async def once(
    request: Request, database: Database, owner: str, max_body_bytes: int, run: Callable[[], Awaitable[Response]]
) -> Response:
    """Run `run` once per idempotency key, or at once when the request carries none."""
    key = request.headers.get(HEADER)
    if key is None:
        return await run()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.")
    body = await read_body(request, max_body_bytes)
    fingerprint = hashlib.sha256(b"\0".join((request.method.encode(), request.url.path.encode(), body))).hexdigest()
    if not await _claim(database, owner, key, fingerprint):
        return await _replay(database, owner, key, fingerprint)
    try:
        response = await run()
    except BaseException:
        await database.execute(keys.delete().where(keys.c.owner == owner, keys.c.key == key))
        raise
    await database.execute(
        keys.update()
        .where(keys.c.owner == owner, keys.c.key == key)
        .values(status_code=response.status_code, body=bytes(response.body).decode())
    )
    return response


async def _claim(database: Database, owner: str, key: str, fingerprint: str) -> bool:
    now = utc_now()
    # A key older than 24 hours is free again.
    await database.execute(
        keys.delete().where(keys.c.owner == owner, keys.c.key == key, keys.c.created_at < now - KEPT_FOR)
    )
    claimed = await database.fetch_one(
        insert_ignoring_conflict(database, keys)
        .values(owner=owner, key=key, fingerprint=fingerprint, created_at=now)
        .returning(keys.c.key)
    )
    return claimed is not None


async def _replay(database: Database, owner: str, key: str, fingerprint: str) -> Response:
    row = await database.fetch_one(sa.select(keys).where(keys.c.owner == owner, keys.c.key == key))
    if row is None:  # released meanwhile by a request that failed: the client may retry
        raise IdempotencyKeyInUse()
    if row["fingerprint"] != fingerprint:
        raise IdempotencyKeyReused()
    if row["status_code"] is None:
        raise IdempotencyKeyInUse()
    return Response(
        row["body"],
        status_code=row["status_code"],
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )
