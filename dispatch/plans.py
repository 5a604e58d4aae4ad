"""Plans and their prices, as the `plans` table holds them (seeded by a migration)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database

from base.errors import InvalidInput
from dispatch.tables import plans


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    amount_cents: int
    currency: str


class Plans:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, code: str) -> Plan:
        """An active plan, or InvalidInput naming the ones that exist."""
        row = await self._db.fetch_one(sa.select(plans).where(plans.c.code == code, plans.c.active.is_(True)))
        if row is None:
            codes = [r["code"] for r in await self._db.fetch_all(sa.select(plans.c.code).where(plans.c.active))]
            raise InvalidInput(f"plan_code must be one of: {', '.join(sorted(codes))}.")
        return Plan(code=row["code"], name=row["name"], amount_cents=row["amount_cents"], currency=row["currency"])
