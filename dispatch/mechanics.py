"""The mechanics registry: who can be booked. Deleting is soft, so history keeps its names.

Live mechanics are cached per process for `CACHE_TTL_S` (the status endpoint reads them on every poll); a delete
or a move between workshops is announced on a Redis channel so every process drops its copy at once. A mechanic
missing from the cache is read once however many callers miss it together: when a polled entry expires, every
poll in flight would otherwise query the database for it at the same moment.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, utc_now
from base.errors import MechanicNotFound
from base.ids import canonical_id
from base.sql import Prepared, contains_text
from base.tables import mechanics
from delivery.bus import Bus


class ProviderType(StrEnum):
    INDEPENDENT = "independent"
    WORKSHOP = "workshop"


@dataclass(frozen=True)
class Mechanic:
    id: str
    name: str
    provider_type: str
    last_seen_at: datetime | None = None  # as last flushed to the database: stands in when Redis lost its copy
    workshop_id: str | None = None


def _mechanic(row: Any) -> Mechanic:
    m = row._mapping
    return Mechanic(
        id=str(m["id"]),
        name=m["name"],
        provider_type=m["provider_type"],
        last_seen_at=as_utc(m["last_seen_at"]) if m["last_seen_at"] is not None else None,
        workshop_id=str(m["workshop_id"]) if m["workshop_id"] is not None else None,
    )


CACHE_TTL_S = 5.0
CACHE_LIMIT = 50_000
_LIVE_BY_ID = sa.select(mechanics).where(
    mechanics.c.id == sa.bindparam("mechanic_id"), mechanics.c.deleted_at.is_(None)
)


class Mechanics:
    def __init__(self, database: Database, bus: Bus, channel: str) -> None:
        self._db = database
        self._bus = bus
        self._channel = channel
        self._cache: dict[str, tuple[Mechanic, float]] = {}
        self._reading: dict[str, asyncio.Task[dict[str, Mechanic]]] = {}  # reads in flight, by the ids they read
        bus.subscribe(channel, self._forget)

    async def _forget(self, mechanic_id: str) -> None:
        self._cache.pop(mechanic_id, None)
        self._reading.pop(mechanic_id, None)  # a read in flight may predate the change: it must not be cached

    async def changed(self, mechanic_id: str) -> None:
        """Every process, this one first, drops its copy of a mechanic whose row changed."""
        await self._forget(mechanic_id)
        await self._bus.publish(self._channel, mechanic_id)

    async def workshop_of(self, mechanic_id: str) -> str | None:
        """The workshop a live mechanic works for (cached with the mechanic); None for an unknown one."""
        found = await self.get_many([mechanic_id])
        return found[0].workshop_id if found else None

    async def create(self, name: str, provider_type: ProviderType) -> Mechanic:
        mechanic_id = str(uuid.uuid4())
        await self._db.execute(
            mechanics.insert().values(
                id=mechanic_id, name=name, provider_type=provider_type.value, created_at=utc_now()
            )
        )
        return Mechanic(id=mechanic_id, name=name, provider_type=provider_type.value)

    async def get(self, mechanic_id: str) -> Mechanic:
        """An existing, non-deleted mechanic, or MechanicNotFound (also for a malformed id)."""
        # Every status poll comes here: an id sent as the API wrote it is already canonical, and found as it is.
        entry = self._cache.get(mechanic_id)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        found = await self.get_many([mechanic_id])
        if not found:
            raise MechanicNotFound()
        return found[0]

    async def get_many(self, mechanic_ids: list[str]) -> list[Mechanic]:
        """The existing, non-deleted ones among `mechanic_ids`, in no particular order."""
        ids = {c for c in (canonical_id(i) for i in mechanic_ids) if c is not None}
        now = time.monotonic()
        found: list[Mechanic] = []
        for mechanic_id in ids:
            entry = self._cache.get(mechanic_id)
            if entry is not None and entry[1] > now:
                found.append(entry[0])
        missing = ids - {m.id for m in found}
        if missing:
            if len(self._cache) > CACHE_LIMIT:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            found += await self._read(missing)
        return found

    async def _read(self, missing: set[str]) -> list[Mechanic]:
        """Join the reads in flight for some of `missing`, start one read for the rest."""
        unread = [i for i in missing if i not in self._reading]
        if unread:
            read = asyncio.create_task(self._load(unread))
            for mechanic_id in unread:
                self._reading[mechanic_id] = read
            read.add_done_callback(lambda done: self._read_done(unread, done))
        reads = {self._reading[i] for i in missing}
        loaded: dict[str, Mechanic] = {}
        for mechanics_read in await asyncio.gather(*map(asyncio.shield, reads)):  # a caller gone stops no one else
            loaded.update(mechanics_read)
        return [loaded[i] for i in missing if i in loaded]

    async def _load(self, mechanic_ids: list[str]) -> dict[str, Mechanic]:
        if len(mechanic_ids) == 1:  # the common miss (a booking's favorite, an app connecting): compiled once
            rows = await self._db.fetch_all(Prepared(_LIVE_BY_ID, {"mechanic_id": mechanic_ids[0]}))
        else:
            rows = await self._db.fetch_all(
                sa.select(mechanics).where(mechanics.c.id.in_(mechanic_ids), mechanics.c.deleted_at.is_(None))
            )
        expires = time.monotonic() + CACHE_TTL_S
        this_read = asyncio.current_task()
        loaded = {m.id: m for m in map(_mechanic, rows)}
        for mechanic in loaded.values():
            if self._reading.get(mechanic.id) is this_read:  # not changed meanwhile
                self._cache[mechanic.id] = (mechanic, expires)
        return loaded

    def _read_done(self, mechanic_ids: list[str], read: asyncio.Task[dict[str, Mechanic]]) -> None:
        for mechanic_id in mechanic_ids:
            if self._reading.get(mechanic_id) is read:
                del self._reading[mechanic_id]
        if not read.cancelled():
            read.exception()  # its callers got it; retrieved here too, in case every caller had gone

    async def named(self, part: str, limit: int) -> list[Mechanic]:
        """Live mechanics whose name contains `part` (in any case), by name: how operations picks one."""
        rows = await self._db.fetch_all(
            sa.select(mechanics)
            .where(mechanics.c.deleted_at.is_(None), contains_text(mechanics.c.name, part))
            .order_by(mechanics.c.name, mechanics.c.created_at)
            .limit(limit)
        )
        return [_mechanic(row) for row in rows]

    async def names(self, mechanic_ids: list[str]) -> dict[str, str]:
        """Names by id, deleted mechanics included (a request's history keeps its names): live ones from the
        cache, the database asked only for the rest."""
        names = {m.id: m.name for m in await self.get_many(mechanic_ids)}
        gone = [i for i in mechanic_ids if i and i not in names and canonical_id(i) is not None]
        if gone:
            rows = await self._db.fetch_all(sa.select(mechanics.c.id, mechanics.c.name).where(mechanics.c.id.in_(gone)))
            names.update((str(r["id"]), r["name"]) for r in rows)
        return names

    async def delete(self, mechanic_id: str) -> Mechanic:
        """Soft-delete; raises MechanicNotFound if there was nothing to delete."""
        canonical = canonical_id(mechanic_id)
        if canonical is None:
            raise MechanicNotFound()
        row = await self._db.fetch_one(
            mechanics.update()
            .where(mechanics.c.id == canonical, mechanics.c.deleted_at.is_(None))
            .values(deleted_at=utc_now())
            .returning(*mechanics.c)
        )
        if row is None:
            raise MechanicNotFound()
        await self.changed(canonical)
        return _mechanic(row)
