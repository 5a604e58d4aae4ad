"""Workshops: teams of mechanics a customer can favorite, so that whichever member is free takes the booking.

A mechanic works for at most one workshop (`mechanics.workshop_id`). A workshop with its live members is cached
per process like a mechanic is, and a change of members or a delete is announced on a Redis channel so every
process drops its copy at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database

from base.clock import utc_now
from base.errors import MechanicInOtherWorkshop, MechanicNotFound, WorkshopNotFound
from base.ids import canonical_id
from base.tables import mechanics
from delivery.bus import Bus
from dispatch.mechanics import Mechanics
from dispatch.tables import workshops

CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class Workshop:
    id: str
    name: str
    member_ids: tuple[str, ...]  # live mechanics only, longest on the platform first


class Workshops:
    def __init__(self, database: Database, registry: Mechanics, bus: Bus, channel: str) -> None:
        self._db = database
        self._registry = registry
        self._bus = bus
        self._channel = channel
        self._cache: dict[str, tuple[Workshop, float]] = {}
        bus.subscribe(channel, self._forget)

    async def _forget(self, workshop_id: str) -> None:
        self._cache.pop(workshop_id, None)

    async def _changed(self, workshop_id: str) -> None:
        self._cache.pop(workshop_id, None)
        await self._bus.publish(self._channel, workshop_id)

    async def create(self, name: str) -> Workshop:
        workshop_id = str(uuid.uuid4())
        await self._db.execute(workshops.insert().values(id=workshop_id, name=name, created_at=utc_now()))
        return Workshop(id=workshop_id, name=name, member_ids=())

    async def get(self, workshop_id: str) -> Workshop:
        """A workshop that is not deleted, with its live members; WorkshopNotFound otherwise (a malformed id too)."""
        canonical = canonical_id(workshop_id)
        if canonical is None:
            raise WorkshopNotFound()
        entry = self._cache.get(canonical)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]
        found = await self._load([canonical])
        if not found:
            raise WorkshopNotFound()
        self._cache[canonical] = (found[0], now + CACHE_TTL_S)
        return found[0]

    async def name_of(self, workshop_id: str) -> str:
        """A workshop's name, deleted ones included (a request's history keeps its names)."""
        try:
            return (await self.get(workshop_id)).name
        except WorkshopNotFound:
            row = await self._db.fetch_one(sa.select(workshops.c.name).where(workshops.c.id == workshop_id))
            return row["name"] if row is not None else "your workshop"

    async def every(self) -> list[Workshop]:
        return await self._load(None)

    async def _load(self, ids: list[str] | None) -> list[Workshop]:
        query = sa.select(workshops.c.id, workshops.c.name).where(workshops.c.deleted_at.is_(None))
        if ids is not None:
            query = query.where(workshops.c.id.in_(ids))
        rows = await self._db.fetch_all(query.order_by(workshops.c.name))
        if not rows:
            return []
        members = await self._db.fetch_all(
            sa.select(mechanics.c.id, mechanics.c.workshop_id)
            .where(mechanics.c.workshop_id.in_([r["id"] for r in rows]), mechanics.c.deleted_at.is_(None))
            .order_by(mechanics.c.created_at)
        )
        by_workshop: dict[str, list[str]] = {}
        for member in members:
            by_workshop.setdefault(str(member["workshop_id"]), []).append(str(member["id"]))
        return [Workshop(str(r["id"]), r["name"], tuple(by_workshop.get(str(r["id"]), ()))) for r in rows]

    async def add_member(self, workshop_id: str, mechanic_id: str) -> Workshop:
        """Idempotent; a mechanic of another workshop is refused (MechanicInOtherWorkshop)."""
        workshop = await self.get(workshop_id)
        mechanic = await self._registry.get(mechanic_id)
        joined = await self._db.fetch_one(
            mechanics.update()
            .where(
                mechanics.c.id == mechanic.id,
                mechanics.c.deleted_at.is_(None),
                sa.or_(mechanics.c.workshop_id.is_(None), mechanics.c.workshop_id == workshop.id),
            )
            .values(workshop_id=workshop.id)
            .returning(mechanics.c.id)
        )
        if joined is None:
            raise MechanicInOtherWorkshop()
        await self._registry.changed(mechanic.id)
        await self._changed(workshop.id)
        return await self.get(workshop.id)

    async def remove_member(self, workshop_id: str, mechanic_id: str) -> Workshop:
        """Idempotent: removing someone who is not a member changes nothing."""
        workshop = await self.get(workshop_id)
        canonical = canonical_id(mechanic_id)
        if canonical is None:
            raise MechanicNotFound()
        await self._db.execute(
            mechanics.update()
            .where(mechanics.c.id == canonical, mechanics.c.workshop_id == workshop.id)
            .values(workshop_id=None)
        )
        await self._registry.changed(canonical)
        await self._changed(workshop.id)
        return await self.get(workshop.id)

    async def delete(self, workshop_id: str) -> Workshop:
        """Soft-delete, releasing its members; WorkshopNotFound if there was nothing to delete."""
        workshop = await self.get(workshop_id)
        async with self._db.transaction():
            deleted = await self._db.fetch_one(
                workshops.update()
                .where(workshops.c.id == workshop.id, workshops.c.deleted_at.is_(None))
                .values(deleted_at=utc_now())
                .returning(workshops.c.id)
            )
            await self._db.execute(
                mechanics.update().where(mechanics.c.workshop_id == workshop.id).values(workshop_id=None)
            )
        if deleted is None:
            raise WorkshopNotFound()
        for member in workshop.member_ids:
            await self._registry.changed(member)
        await self._changed(workshop.id)
        return workshop

    async def member_left(self, workshop_id: str) -> None:
        """A member was deleted: every process reads the workshop's members again."""
        await self._changed(workshop_id)
