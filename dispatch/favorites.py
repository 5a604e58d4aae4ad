"""Customers' favorite mechanics: add after a good session, remove, and drop deleted mechanics everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, utc_now
from base.errors import MechanicNotFound
from base.ids import canonical_id
from base.tables import mechanics
from dispatch.mechanics import Mechanic, Mechanics, ProviderType
from dispatch.sql import insert_ignoring_conflict
from dispatch.tables import favorites


@dataclass(frozen=True)
class Favorite:
    provider_id: str
    provider_type: str
    name: str
    booking_count: int
    created_at: datetime
    last_seen_at: datetime | None


class Favorites:
    def __init__(self, database: Database, registry: Mechanics) -> None:
        self._db = database
        self._registry = registry

    async def list(self, customer_id: str) -> list[Favorite]:
        """The customer's favorites among live mechanics, most booked first (the seed's smart default)."""
        rows = await self._db.fetch_all(
            sa.select(favorites, mechanics.c.name, mechanics.c.last_seen_at)
            .join(mechanics, mechanics.c.id == favorites.c.provider_id)
            .where(favorites.c.customer_id == customer_id, mechanics.c.deleted_at.is_(None))
            .order_by(favorites.c.booking_count.desc(), favorites.c.created_at.desc())
        )
        return [
            Favorite(
                provider_id=str(r["provider_id"]),
                provider_type=r["provider_type"],
                name=r["name"],
                booking_count=r["booking_count"],
                created_at=as_utc(r["created_at"]),
                last_seen_at=as_utc(r["last_seen_at"]) if r["last_seen_at"] is not None else None,
            )
            for r in rows
        ]

    async def add(self, customer_id: str, provider_id: str, provider_type: ProviderType) -> tuple[Mechanic, bool]:
        """Add a favorite; the flag is True if it is new. Idempotent, and safe when two adds race (the key decides)."""
        mechanic = await self._registry.get(provider_id)
        inserted = await self._db.fetch_one(
            insert_ignoring_conflict(self._db, favorites)
            .values(
                customer_id=customer_id,
                provider_id=mechanic.id,
                provider_type=provider_type.value,
                created_at=utc_now(),
                booking_count=0,
            )
            .returning(favorites.c.provider_id)
        )
        return mechanic, inserted is not None

    async def remove(self, customer_id: str, provider_id: str) -> None:
        """Idempotent: removing a mechanic who is not a favorite is not an error (a retried DELETE)."""
        canonical = canonical_id(provider_id)
        if canonical is None:
            raise MechanicNotFound()
        await self._db.execute(
            favorites.delete().where(favorites.c.customer_id == customer_id, favorites.c.provider_id == canonical)
        )

    async def is_favorite(self, customer_id: str, mechanic_id: str) -> bool:
        row = await self._db.fetch_one(
            sa.select(favorites.c.provider_id).where(
                favorites.c.customer_id == customer_id, favorites.c.provider_id == mechanic_id
            )
        )
        return row is not None

    async def forget_mechanic(self, mechanic_id: str) -> None:
        """A deleted mechanic disappears from every customer's favorites."""
        await self._db.execute(favorites.delete().where(favorites.c.provider_id == mechanic_id))
