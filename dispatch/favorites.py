"""Customers' favorite mechanics and workshops: add after a good session, remove, and drop deleted ones
everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, utc_now
from base.errors import MechanicNotFound
from base.ids import canonical_id
from base.tables import mechanics
from dispatch.mechanics import Mechanics, ProviderType
from dispatch.sql import insert_ignoring_conflict
from dispatch.tables import favorites, workshops
from dispatch.workshops import Workshops


@dataclass(frozen=True)
class Favorite:
    provider_id: str
    provider_type: str
    name: str
    booking_count: int
    created_at: datetime
    last_seen_at: datetime | None  # a mechanic's, as last flushed to the database


class Favorites:
    def __init__(self, database: Database, registry: Mechanics, workshops: Workshops) -> None:
        self._db = database
        self._registry = registry
        self._workshops = workshops

    async def list(self, customer_id: str) -> list[Favorite]:
        """The customer's favorite mechanics and workshops that are not deleted, most booked first (the seed's
        smart default)."""
        is_mechanic = favorites.c.provider_type == ProviderType.INDEPENDENT.value
        rows = await self._db.fetch_all(
            sa.select(
                favorites,
                sa.func.coalesce(mechanics.c.name, workshops.c.name).label("name"),
                mechanics.c.last_seen_at,
            )
            .outerjoin(
                mechanics,
                sa.and_(is_mechanic, mechanics.c.id == favorites.c.provider_id, mechanics.c.deleted_at.is_(None)),
            )
            .outerjoin(
                workshops,
                sa.and_(~is_mechanic, workshops.c.id == favorites.c.provider_id, workshops.c.deleted_at.is_(None)),
            )
            .where(
                favorites.c.customer_id == customer_id,
                sa.or_(mechanics.c.id.is_not(None), workshops.c.id.is_not(None)),
            )
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

    async def add(self, customer_id: str, provider_id: str, provider_type: ProviderType) -> tuple[str, str, bool]:
        """Add a favorite mechanic or workshop: (its id, its name, whether it is new). Idempotent, and safe when
        two adds race (the key decides)."""
        if provider_type is ProviderType.WORKSHOP:
            workshop = await self._workshops.get(provider_id)
            favorite_id, name = workshop.id, workshop.name
        else:
            mechanic = await self._registry.get(provider_id)
            favorite_id, name = mechanic.id, mechanic.name
        inserted = await self._db.fetch_one(
            insert_ignoring_conflict(self._db, favorites)
            .values(
                customer_id=customer_id,
                provider_id=favorite_id,
                provider_type=provider_type.value,
                created_at=utc_now(),
                booking_count=0,
            )
            .returning(favorites.c.provider_id)
        )
        return favorite_id, name, inserted is not None

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

    async def forget(self, provider_id: str) -> None:
        """A deleted mechanic or workshop disappears from every customer's favorites."""
        await self._db.execute(favorites.delete().where(favorites.c.provider_id == provider_id))
