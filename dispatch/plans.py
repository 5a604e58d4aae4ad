"""Plans and their prices, as the `plans` table holds them (seeded by a migration)."""

from __future__ import annotations

import asyncio
import time
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


# Plans change by migration or by hand in the database, never per booking: every booking reads them, so each process
# keeps the active ones for this long.
CACHE_TTL_S = 30.0


class Plans:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._active: dict[str, Plan] = {}
        self._fresh_until = 0.0
        self._reading: asyncio.Task[None] | None = None

    async def get(self, code: str) -> Plan:
        """An active plan, or InvalidInput naming the ones that exist."""
        if time.monotonic() >= self._fresh_until:
            # One read for every booking that finds the copy expired (a burst would otherwise send one each).
            if self._reading is None:
                self._reading = asyncio.create_task(self._read())
            await asyncio.shield(self._reading)
        plan = self._active.get(code)
        if plan is None:
            raise InvalidInput(f"plan_code must be one of: {', '.join(sorted(self._active))}.")
        return plan

    async def _read(self) -> None:
        try:
            rows = await self._db.fetch_all(sa.select(plans).where(plans.c.active.is_(True)))
        finally:
            self._reading = None
        self._active = {
            r["code"]: Plan(code=r["code"], name=r["name"], amount_cents=r["amount_cents"], currency=r["currency"])
            for r in rows
        }
        self._fresh_until = time.monotonic() + CACHE_TTL_S
