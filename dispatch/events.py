"""The per-request event log: support reads it to answer "why didn't my favorite respond?", the KPIs count it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from databases import Database

from dispatch.models import EventKind
from dispatch.tables import request_events
from presence.clock import as_utc, utc_now


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    mechanic_id: str | None
    attempt: int | None
    detail: str | None


class EventLog:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(
        self,
        request_id: str,
        kind: EventKind,
        *,
        mechanic_id: str | None = None,
        attempt: int | None = None,
        detail: str | None = None,
    ) -> None:
        await self._db.execute(
            request_events.insert().values(
                request_id=request_id,
                at=utc_now(),
                kind=kind.value,
                mechanic_id=mechanic_id,
                attempt=attempt,
                detail=detail[:500] if detail else None,
            )
        )

    async def of(self, request_id: str) -> list[Event]:
        rows = await self._db.fetch_all(
            sa.select(request_events).where(request_events.c.request_id == request_id).order_by(request_events.c.id)
        )
        return [
            Event(
                at=as_utc(r["at"]),
                kind=r["kind"],
                mechanic_id=str(r["mechanic_id"]) if r["mechanic_id"] is not None else None,
                attempt=r["attempt"],
                detail=r["detail"],
            )
            for r in rows
        ]
