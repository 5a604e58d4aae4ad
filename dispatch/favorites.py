"""Customers' favorite mechanics and workshops: add after a good session, remove, and drop deleted ones
everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, utc_now
from base.errors import MechanicNotFound
from base.ids import canonical_id
from base.sql import Prepared, insert_ignoring_conflict
from base.tables import mechanics
from dispatch.live_favorites import LiveFavorites
from dispatch.mechanics import Mechanics, ProviderType
from dispatch.models import Status
from dispatch.tables import favorites, session_requests, workshops
from dispatch.workshops import Workshops

sr = session_requests


def _sessions_with(provider_id: sa.ColumnElement[str], is_mechanic: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    """How many of the customer's sessions a favorite gave, counted from the sessions themselves (so a favorite
    added after its session counts it, and one given back does not): completed sessions, each counted once, for
    the workshop it was booked through, else for the mechanic who gave it."""
    booked_through_workshop = sr.c.preferred_workshop_id == provider_id
    given_by_mechanic = sa.and_(sr.c.mechanic_id == provider_id, sr.c.preferred_workshop_id.is_(None))
    return (
        sa.select(sa.func.count())
        .where(
            sr.c.customer_id == favorites.c.customer_id,
            sr.c.status == Status.COMPLETED.value,
            sa.or_(sa.and_(is_mechanic, given_by_mechanic), sa.and_(~is_mechanic, booked_through_workshop)),
        )
        .scalar_subquery()
    )


def _listed() -> sa.Select[Any]:
    """A customer's favorites with their names and booking counts: built once (`Prepared`), as every stream that
    opens and every list reads it."""
    is_mechanic = favorites.c.provider_type == ProviderType.INDEPENDENT.value
    booked = _sessions_with(favorites.c.provider_id, is_mechanic).label("booking_count")
    return (
        sa.select(
            favorites.c.provider_id,
            favorites.c.provider_type,
            favorites.c.created_at,
            booked,
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
            favorites.c.customer_id == sa.bindparam("customer_id"),
            sa.or_(mechanics.c.id.is_not(None), workshops.c.id.is_not(None)),
        )
        .order_by(booked.desc(), favorites.c.created_at.desc())
    )


_LISTED = _listed()


@dataclass(frozen=True)
class Favorite:
    provider_id: str
    provider_type: str
    name: str
    booking_count: int
    created_at: datetime
    last_seen_at: datetime | None  # a mechanic's, as last flushed to the database


class Favorites:
    def __init__(self, database: Database, registry: Mechanics, workshops: Workshops, live: LiveFavorites) -> None:
        self._db = database
        self._registry = registry
        self._workshops = workshops
        self._live = live

    async def list(self, customer_id: str) -> list[Favorite]:
        """The customer's favorite mechanics and workshops that are not deleted, most booked first (the seed's
        smart default)."""
        rows = await self._db.fetch_all(Prepared(_LISTED, {"customer_id": customer_id}))
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
            )
            .returning(favorites.c.provider_id)
        )
        if inserted is not None:
            await self._live.favorites_changed(customer_id)
        return favorite_id, name, inserted is not None

    async def remove(self, customer_id: str, provider_id: str) -> None:
        """Idempotent: removing a mechanic who is not a favorite is not an error (a retried DELETE)."""
        canonical = canonical_id(provider_id)
        if canonical is None:
            raise MechanicNotFound()
        removed = await self._db.fetch_one(
            favorites.delete()
            .where(favorites.c.customer_id == customer_id, favorites.c.provider_id == canonical)
            .returning(favorites.c.provider_id)
        )
        if removed is not None:
            await self._live.favorites_changed(customer_id)

    async def which_are_favorites(self, customer_id: str, provider_ids: Sequence[str]) -> set[str]:
        """Those of `provider_ids` (mechanics or workshops) the customer has saved, in one query."""
        rows = await self._db.fetch_all(
            sa.select(favorites.c.provider_id).where(
                favorites.c.customer_id == customer_id, favorites.c.provider_id.in_(provider_ids)
            )
        )
        return {str(row["provider_id"]) for row in rows}

    async def forget(self, provider_id: str) -> None:
        """A deleted mechanic or workshop disappears from every customer's favorites."""
        await self._db.execute(favorites.delete().where(favorites.c.provider_id == provider_id))
