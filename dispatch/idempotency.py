"""Idempotency-Keys stored with the booking they made (Stripe's keys; "atomic phases" in one transaction).

A key is written in the same statement as its booking (`dispatch/changes.py`, `KEYED`), never before it: a first
try that died or failed anywhere left either its booking and its key, or neither. So a retry finds the booking,
or books it; no key is ever "in use" forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, utc_now
from base.errors import IdempotencyKeyReused
from dispatch.tables import idempotency_keys as keys

KEPT_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class IdempotencyKey:
    owner: str  # the caller's subject: keys are per user
    key: str
    fingerprint: str  # of the method, path and body the key was first used with


class IdempotencyKeys:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def booking_of(self, key: IdempotencyKey) -> str | None:
        """The request this key made in the last 24 hours; IdempotencyKeyReused when it came with another body.
        An older key is forgotten here, so that it can be used again."""
        where = (keys.c.owner == key.owner, keys.c.key == key.key)
        row = await self._db.fetch_one(
            sa.select(keys.c.fingerprint, keys.c.request_id, keys.c.created_at).where(*where)
        )
        if row is None:
            return None
        if as_utc(row["created_at"]) < utc_now() - KEPT_FOR:
            await self._db.execute(keys.delete().where(*where, keys.c.created_at == row["created_at"]))
            return None
        if row["fingerprint"] != key.fingerprint:
            raise IdempotencyKeyReused()
        return str(row["request_id"])
