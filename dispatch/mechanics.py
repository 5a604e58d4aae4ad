"""The mechanics registry: who can be booked. Deleting is soft, so history keeps its names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from databases import Database

from dispatch.errors import MechanicNotFound
from presence.clock import as_utc, utc_now
from presence.tables import mechanics


class ProviderType(StrEnum):
    INDEPENDENT = "independent"
    WORKSHOP = "workshop"


@dataclass(frozen=True)
class Mechanic:
    id: str
    name: str
    provider_type: str
    last_seen_at: datetime | None


def canonical_id(value: str) -> str | None:
    """The canonical text of a UUID, or None when `value` is not one (a malformed id is simply not found)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def _mechanic(row: Any) -> Mechanic:
    m = row._mapping
    return Mechanic(
        id=str(m["id"]),
        name=m["name"],
        provider_type=m["provider_type"],
        last_seen_at=as_utc(m["last_seen_at"]) if m["last_seen_at"] is not None else None,
    )


class Mechanics:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, name: str, provider_type: ProviderType) -> Mechanic:
        mechanic_id = str(uuid.uuid4())
        await self._db.execute(
            mechanics.insert().values(
                id=mechanic_id, name=name, provider_type=provider_type.value, created_at=utc_now()
            )
        )
        return Mechanic(id=mechanic_id, name=name, provider_type=provider_type.value, last_seen_at=None)

    async def get(self, mechanic_id: str) -> Mechanic:
        """An existing, non-deleted mechanic, or MechanicNotFound (also for a malformed id)."""
        found = await self.get_many([mechanic_id])
        if not found:
            raise MechanicNotFound()
        return found[0]

    async def get_many(self, mechanic_ids: list[str]) -> list[Mechanic]:
        """The existing, non-deleted ones among `mechanic_ids`, in no particular order."""
        ids = [c for c in (canonical_id(i) for i in mechanic_ids) if c is not None]
        if not ids:
            return []
        rows = await self._db.fetch_all(
            sa.select(mechanics).where(mechanics.c.id.in_(ids), mechanics.c.deleted_at.is_(None))
        )
        return [_mechanic(row) for row in rows]

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
        return _mechanic(row)
