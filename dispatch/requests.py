"""The only code that writes session requests, their event log and their exclusions.

Every change of a request is a `transition`: one conditional `UPDATE … RETURNING`, its event rows and whatever
the same change must count (a favorite's booking count, an exclusion), committed in one transaction. Whichever
caller's update returns the row owns the transition; a process that dies at any point leaves either all of it
or none of it. The conditions make the races safe across processes: the database decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from databases import Database
from sqlalchemy.sql import ClauseElement, ColumnElement

from base.clock import as_utc, utc_now
from base.errors import RequestNotFound
from base.ids import canonical_id
from dispatch.events import Event
from dispatch.models import EventKind, Phase, SessionRequest, Status
from dispatch.sql import insert_ignoring_conflict
from dispatch.tables import request_events, request_exclusions, session_requests

sr = session_requests

MAX_DETAIL = 500
OPEN_STATUSES = (Status.PENDING.value, Status.ACCEPTED.value)


@dataclass(frozen=True)
class Note:
    """One row of a request's event log."""

    kind: EventKind
    mechanic_id: str | None = None
    attempt: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Deadline:
    kind: str  # "window" or "ack"
    request_id: str
    attempt: int
    resends: int
    due_epoch: float


Notes = Callable[[SessionRequest], Sequence[Note]]
Also = Callable[[SessionRequest], Sequence[ClauseElement]]


class Requests:
    def __init__(self, database: Database) -> None:
        self._db = database

    # Reading

    async def get(self, request_id: str) -> SessionRequest:
        canonical = canonical_id(request_id)
        row = None
        if canonical is not None:
            row = await self._db.fetch_one(sa.select(sr).where(sr.c.id == canonical))
        if row is None:
            raise RequestNotFound()
        return SessionRequest.from_row(row)

    async def open_requests(self, limit: int = 200) -> list[SessionRequest]:
        """Pending and accepted requests, newest first: what operations watches."""
        rows = await self._db.fetch_all(
            sa.select(sr).where(sr.c.status.in_(OPEN_STATUSES)).order_by(sr.c.created_at.desc()).limit(limit)
        )
        return [SessionRequest.from_row(row) for row in rows]

    async def of_customer(self, customer_id: str, *, open_only: bool, limit: int) -> list[SessionRequest]:
        """A customer's requests, newest first: the open ones (pending or accepted), or the latest of any status."""
        query = sa.select(sr).where(sr.c.customer_id == customer_id)
        if open_only:
            query = query.where(sr.c.status.in_(OPEN_STATUSES))
        rows = await self._db.fetch_all(query.order_by(sr.c.created_at.desc()).limit(limit))
        return [SessionRequest.from_row(row) for row in rows]

    async def open_for_favorite(self, customer_id: str, mechanic_id: str) -> SessionRequest | None:
        """The customer's open request for this favorite, if any (at most one: see the tables)."""
        row = await self._db.fetch_one(
            sa.select(sr)
            .where(
                sr.c.customer_id == customer_id,
                sr.c.preferred_mechanic_id == mechanic_id,
                sr.c.status.in_(OPEN_STATUSES),
            )
            .order_by(sr.c.created_at.desc())
            .limit(1)
        )
        return SessionRequest.from_row(row) if row is not None else None

    async def offerable_to(self, mechanic_id: str, limit: int) -> list[SessionRequest]:
        """Pending requests a mechanic may take: their priority requests and every broadcast they were not
        excluded from, oldest first."""
        excluded = sa.select(request_exclusions.c.request_id).where(request_exclusions.c.mechanic_id == mechanic_id)
        rows = await self._db.fetch_all(
            sa.select(sr)
            .where(
                sr.c.status == Status.PENDING.value,
                sa.or_(
                    sa.and_(sr.c.phase == Phase.PRIORITY.value, sr.c.preferred_mechanic_id == mechanic_id),
                    sr.c.phase == Phase.BROADCAST.value,
                ),
                sr.c.id.not_in(excluded),
            )
            .order_by(sr.c.created_at)
            .limit(limit)
        )
        return [SessionRequest.from_row(row) for row in rows]

    async def assigned_to(self, mechanic_id: str, limit: int) -> list[SessionRequest]:
        """Sessions accepted by a mechanic and not yet completed, oldest first."""
        rows = await self._db.fetch_all(
            sa.select(sr)
            .where(sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic_id)
            .order_by(sr.c.accepted_at)
            .limit(limit)
        )
        return [SessionRequest.from_row(row) for row in rows]

    async def open_priority(self) -> list[SessionRequest]:
        rows = await self._db.fetch_all(
            sa.select(sr).where(sr.c.status == Status.PENDING.value, sr.c.phase == Phase.PRIORITY.value)
        )
        return [SessionRequest.from_row(row) for row in rows]

    async def deadlines_before(self, horizon: datetime, limit: int) -> list[Deadline]:
        """Priority windows and ack clocks of open priority requests that fall due before `horizon`."""
        open_priority = (sr.c.status == Status.PENDING.value, sr.c.phase == Phase.PRIORITY.value)
        windows = await self._db.fetch_all(
            sa.select(sr.c.id, sr.c.attempt, sr.c.priority_deadline)
            .where(*open_priority, sr.c.priority_deadline <= horizon)
            .order_by(sr.c.priority_deadline)
            .limit(limit)
        )
        acks = await self._db.fetch_all(
            sa.select(sr.c.id, sr.c.attempt, sr.c.ack_deadline, sr.c.offer_resends)
            .where(*open_priority, sr.c.offer_acked_at.is_(None), sr.c.ack_deadline <= horizon)
            .order_by(sr.c.ack_deadline)
            .limit(limit)
        )
        due = [
            Deadline("window", str(r["id"]), r["attempt"], 0, as_utc(r["priority_deadline"]).timestamp())
            for r in windows
        ]
        due += [
            Deadline("ack", str(r["id"]), r["attempt"], r["offer_resends"], as_utc(r["ack_deadline"]).timestamp())
            for r in acks
        ]
        return due

    async def ids_where(self, *conditions: ColumnElement[bool]) -> list[tuple[str, int]]:
        rows = await self._db.fetch_all(sa.select(sr.c.id, sr.c.attempt).where(*conditions))
        return [(str(r["id"]), int(r["attempt"])) for r in rows]

    async def exists_where(self, *conditions: ColumnElement[bool]) -> bool:
        return await self._db.fetch_one(sa.select(sr.c.id).where(*conditions)) is not None

    async def excluded(self, request_id: str) -> tuple[str, ...]:
        rows = await self._db.fetch_all(
            sa.select(request_exclusions.c.mechanic_id).where(request_exclusions.c.request_id == request_id)
        )
        return tuple(str(r["mechanic_id"]) for r in rows)

    async def events_of(self, request_id: str) -> list[Event]:
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

    # Writing

    async def dismiss_favorite_prompt(self, request_id: str) -> None:
        await self._db.execute(
            sr.update()
            .where(sr.c.id == request_id, sr.c.favorite_prompt_dismissed_at.is_(None))
            .values(favorite_prompt_dismissed_at=utc_now())
        )

    async def exclude(self, request_id: str, mechanic_id: str, reason: str, note: Note) -> None:
        """Never offer this request to this mechanic again, with its event, atomically."""
        async with self._db.transaction():
            await self._db.execute(self.exclusion(request_id, mechanic_id, reason))
            await self._db.execute(request_events.insert().values(self._event_values(request_id, note, utc_now())))

    async def insert(self, values: dict[str, Any], notes: Notes) -> SessionRequest | None:
        """Store a new request with its first events; None when its Checkout Session already made one."""
        async with self._db.transaction():
            row = await self._db.fetch_one(
                insert_ignoring_conflict(self._db, sr).values(id=str(uuid.uuid4()), **values).returning(*sr.c)
            )
            if row is None:
                return None
            request = SessionRequest.from_row(row)
            await self._record(request, notes(request))
        return request

    async def transition(
        self,
        request_id: str,
        when: Sequence[ColumnElement[bool]],
        values: dict[str, Any],
        notes: Notes,
        also: Also | None = None,
    ) -> SessionRequest | None:
        """Apply `values` if the request still matches `when`, with its events and side rows, atomically.

        Returns the request as changed, or None when the conditions no longer hold (someone else won).
        """
        async with self._db.transaction():
            row = await self._db.fetch_one(
                sr.update().where(sr.c.id == request_id, *when).values(**values).returning(*sr.c)
            )
            if row is None:
                return None
            request = SessionRequest.from_row(row)
            await self._record(request, notes(request))
            for statement in also(request) if also else ():
                await self._db.execute(statement)
        return request

    def exclusion(self, request_id: str, mechanic_id: str, reason: str) -> ClauseElement:
        """A side row for `transition`: never offer this request to this mechanic again."""
        return insert_ignoring_conflict(self._db, request_exclusions).values(
            request_id=request_id, mechanic_id=mechanic_id, reason=reason
        )

    async def _record(self, request: SessionRequest, notes: Sequence[Note]) -> None:
        """Every note in one multi-row INSERT (one statement shape per count of notes, compiled once)."""
        if notes:
            now = utc_now()
            await self._db.execute(
                request_events.insert().values([self._event_values(request.id, note, now) for note in notes])
            )

    @staticmethod
    def _event_values(request_id: str, note: Note, at: Any) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "at": at,
            "kind": note.kind.value,
            "mechanic_id": note.mechanic_id,
            "attempt": note.attempt,
            "detail": note.detail[:MAX_DETAIL] if note.detail else None,
        }
