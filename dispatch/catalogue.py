"""Mechanics and workshops with known ids, imported idempotently: the demo's, or a catalogue brought over from
another system. Rows only: an import runs before any server (or Redis) does, so nothing is announced; each
process reads the rows when it first needs them, as it does after any restart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database

from base.clock import utc_now
from base.tables import mechanics
from dispatch.mechanics import ProviderType
from dispatch.tables import workshops


@dataclass(frozen=True)
class ImportedMechanic:
    id: str
    name: str
    provider_type: ProviderType


@dataclass(frozen=True)
class ImportedWorkshop:
    id: str
    name: str
    member_ids: tuple[str, ...]


async def import_catalogue(
    database: Database, new_mechanics: Iterable[ImportedMechanic], new_workshops: Iterable[ImportedWorkshop]
) -> None:
    """Insert the mechanics and workshops that are missing; a workshop's members join it when it is created, and
    only those who belong to no workshop yet. What exists is left as it is."""
    wanted = list(new_mechanics)
    existing = {
        str(row["id"])
        for row in await database.fetch_all(sa.select(mechanics.c.id).where(mechanics.c.id.in_([m.id for m in wanted])))
    }
    for mechanic in wanted:
        if mechanic.id not in existing:
            await database.execute(
                mechanics.insert().values(
                    id=mechanic.id, name=mechanic.name, provider_type=mechanic.provider_type.value, created_at=utc_now()
                )
            )
    for workshop in new_workshops:
        if await database.fetch_one(sa.select(workshops.c.id).where(workshops.c.id == workshop.id)) is not None:
            continue
        await database.execute(workshops.insert().values(id=workshop.id, name=workshop.name, created_at=utc_now()))
        await database.execute(
            mechanics.update()
            .where(mechanics.c.id.in_(workshop.member_ids), mechanics.c.workshop_id.is_(None))
            .values(workshop_id=workshop.id)
        )
