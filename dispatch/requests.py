"""The only code that writes session requests, their event log and their exclusions.

Every change of a request is a `Change` (`dispatch/changes.py`): one conditional `UPDATE … RETURNING` (or the
`INSERT` of a new request), its event rows and the rows it touches beside the request (an exclusion, a remembered
Idempotency-Key), written atomically: one statement on PostgreSQL, one transaction on SQLite. Whichever caller's
update returns the row owns the change; a process that dies at any point leaves either all of it or none of it.
The conditions make the races safe across processes: the database decides.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from databases.interfaces import Record
from sqlalchemy.sql import ClauseElement, ColumnElement

from base.clock import as_stored, as_utc, utc_now
from base.database import AppDatabase
from base.errors import RequestNotFound
from base.ids import canonical_id
from base.sql import Prepared, contains_text, insert_ignoring_conflict, starts_with_text
from base.tables import mechanics
from dispatch.changes import OVERDUE, Change, Note, param
from dispatch.deadlines import Deadline
from dispatch.events import Event
from dispatch.models import EventKind, OfferAck, Phase, SessionRequest, Status
from dispatch.tables import request_events, request_exclusions, session_requests

sr = session_requests


@dataclass(frozen=True)
class RequestSearch:
    """What support looks a request up by; every criterion given must match. Text matches a name in part, in any
    case; an id matches exactly (a request's id also by its first characters, as the console shows it)."""

    request_id: str | None = None
    customer: str | None = None  # their id, or part of the name they booked under
    mechanic: str | None = None  # the favorite's or the accepting mechanic's id, or part of their name
    since: datetime | None = None
    until: datetime | None = None
    open_only: bool = False


MAX_DETAIL = 500
_OVERDUE = sa.select(sr.c.id).where(sr.c.id == param("request_id"), *OVERDUE)
# A request delivered is settled only if no later change marked it again (its mark is still the one delivered).
_SETTLE = {
    "sqlite": sa.text(
        "UPDATE session_requests SET owed_at = NULL"
        " FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.at') AS at FROM json_each(:done))"
        " AS done WHERE session_requests.id = done.id AND session_requests.owed_at = done.at"
    ),
    "postgresql": sa.text(
        "UPDATE session_requests SET owed_at = NULL"
        " FROM json_to_recordset(CAST(:done AS json)) AS done(id uuid, at timestamptz)"
        " WHERE session_requests.id = done.id AND session_requests.owed_at = done.at"
    ),
}
# Acks of priority offers in a batch (`dispatch/acks.py`), `:acks` a JSON array of {request_id, attempt, mechanic,
# workshop}: each marks its offer acked when it is for this attempt, still open, from the favorite or a member of
# the favorite workshop, and not yet acked, and an `acked` event is logged for each offer marked.
_ACKED_WHEN = (
    "session_requests.id = acks.request_id AND session_requests.attempt = acks.attempt"
    f" AND session_requests.status = '{Status.PENDING.value}' AND session_requests.phase = '{Phase.PRIORITY.value}'"
    " AND session_requests.offer_acked_at IS NULL"
    " AND (session_requests.preferred_mechanic_id = acks.mechanic"
    " OR session_requests.preferred_workshop_id = acks.workshop)"
)
_NOW = sa.bindparam("now", type_=sa.DateTime(timezone=True))
_ACKED: sa.BindParameter[str] = sa.bindparam("kind", EventKind.ACKED.value)
_ACK_ALL_POSTGRESQL = sa.text(
    "WITH acks AS (SELECT * FROM json_to_recordset(CAST(:acks AS json))"
    " AS acks(request_id uuid, attempt integer, mechanic uuid, workshop uuid)),"
    " changed AS (UPDATE session_requests SET offer_acked_at = :now, ack_deadline = NULL FROM acks"
    f" WHERE {_ACKED_WHEN} RETURNING session_requests.id, session_requests.attempt, acks.mechanic),"
    " logged AS (INSERT INTO request_events (request_id, at, kind, mechanic_id, attempt)"
    " SELECT id, :now, :kind, mechanic, attempt FROM changed)"
    " SELECT id, attempt FROM changed"
).bindparams(_NOW, _ACKED)
# SQLite: the rows marked, then their events (its RETURNING cannot name the acks: the caller says who acked).
_MARK_ACKED_SQLITE = sa.text(
    "UPDATE session_requests SET offer_acked_at = :now, ack_deadline = NULL FROM (SELECT"
    " json_extract(value, '$.request_id') AS request_id, json_extract(value, '$.attempt') AS attempt,"
    " json_extract(value, '$.mechanic') AS mechanic, json_extract(value, '$.workshop') AS workshop"
    f" FROM json_each(:acks)) AS acks WHERE {_ACKED_WHEN}"
    " RETURNING session_requests.id, session_requests.attempt"
).bindparams(_NOW)
_LOG_ACKED_SQLITE = sa.text(
    "INSERT INTO request_events (request_id, at, kind, mechanic_id, attempt) SELECT"
    " json_extract(value, '$.request_id'), :now, :kind, json_extract(value, '$.mechanic'),"
    " json_extract(value, '$.attempt') FROM json_each(:acks)"
).bindparams(_NOW, _ACKED)
OPEN_STATUSES = (Status.PENDING.value, Status.ACCEPTED.value)


class Requests:
    def __init__(self, database: AppDatabase) -> None:
        self._db = database
        self._one_statement = database.url.dialect == "postgresql"
        self._shapes: dict[Change, _Built] = {}

    # Reading

    async def get(self, request_id: str) -> SessionRequest:
        canonical = canonical_id(request_id)
        row = None
        if canonical is not None:
            row = await self._db.fetch_one(sa.select(sr).where(sr.c.id == canonical))
        if row is None:
            raise RequestNotFound()
        return SessionRequest.from_row(row)

    async def many(self, request_ids: Iterable[str]) -> list[SessionRequest]:
        canonical = [c for c in map(canonical_id, request_ids) if c is not None]
        if not canonical:
            return []
        rows = await self._db.fetch_all(sa.select(sr).where(sr.c.id.in_(canonical)))
        return [SessionRequest.from_row(row) for row in rows]

    async def search(self, wanted: RequestSearch, limit: int = 100) -> list[SessionRequest]:
        """Requests of any status matching every criterion given, newest first: what support looks up."""
        query = sa.select(sr)
        if wanted.open_only:
            query = query.where(sr.c.status.in_(OPEN_STATUSES))
        if wanted.request_id:
            exact = canonical_id(wanted.request_id)
            query = query.where(sr.c.id == exact if exact else starts_with_text(sr.c.id, wanted.request_id))
        if wanted.customer:
            customer_id = canonical_id(wanted.customer)
            query = query.where(
                sr.c.customer_id == customer_id if customer_id else contains_text(sr.c.customer_name, wanted.customer)
            )
        if wanted.mechanic:
            mechanic_id = canonical_id(wanted.mechanic)
            named = sa.select(mechanics.c.id).where(contains_text(mechanics.c.name, wanted.mechanic))
            ids = [mechanic_id] if mechanic_id else named
            query = query.where(sa.or_(sr.c.mechanic_id.in_(ids), sr.c.preferred_mechanic_id.in_(ids)))
        if wanted.since:
            query = query.where(sr.c.created_at >= wanted.since)
        if wanted.until:
            query = query.where(sr.c.created_at < wanted.until)
        rows = await self._db.fetch_all(query.order_by(sr.c.created_at.desc()).limit(limit))
        return [SessionRequest.from_row(row) for row in rows]

    async def of_customer(self, customer_id: str, *, open_only: bool, limit: int) -> list[SessionRequest]:
        """A customer's requests, newest first: the open ones (pending or accepted), or the latest of any status."""
        query = sa.select(sr).where(sr.c.customer_id == customer_id)
        if open_only:
            query = query.where(sr.c.status.in_(OPEN_STATUSES))
        rows = await self._db.fetch_all(query.order_by(sr.c.created_at.desc()).limit(limit))
        return [SessionRequest.from_row(row) for row in rows]

    async def open_for_favorite(self, customer_id: str, favorite_id: str) -> SessionRequest | None:
        """The customer's open request for this favorite mechanic or workshop, if any (at most one: see the
        tables)."""
        row = await self._db.fetch_one(
            sa.select(sr)
            .where(
                sr.c.customer_id == customer_id,
                sa.or_(sr.c.preferred_mechanic_id == favorite_id, sr.c.preferred_workshop_id == favorite_id),
                sr.c.status.in_(OPEN_STATUSES),
            )
            .order_by(sr.c.created_at.desc())
            .limit(1)
        )
        return SessionRequest.from_row(row) if row is not None else None

    async def offerable_to(self, mechanic_id: str, workshop_id: str | None, limit: int) -> list[SessionRequest]:
        """Pending requests a mechanic may take: their priority requests, their workshop's, and every broadcast,
        each unless they were excluded from it, oldest first."""
        excluded = sa.select(request_exclusions.c.request_id).where(request_exclusions.c.mechanic_id == mechanic_id)
        favorite = sr.c.preferred_mechanic_id == mechanic_id
        if workshop_id is not None:
            favorite = sa.or_(favorite, sr.c.preferred_workshop_id == workshop_id)
        rows = await self._db.fetch_all(
            sa.select(sr)
            .where(
                sr.c.status == Status.PENDING.value,
                sa.or_(sa.and_(sr.c.phase == Phase.PRIORITY.value, favorite), sr.c.phase == Phase.BROADCAST.value),
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

    async def open_priority_for_workshop(self, workshop_id: str) -> list[SessionRequest]:
        rows = await self._db.fetch_all(
            sa.select(sr).where(
                sr.c.status == Status.PENDING.value,
                sr.c.phase == Phase.PRIORITY.value,
                sr.c.preferred_workshop_id == workshop_id,
            )
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

    async def is_overdue(self, request_id: str, attempt: int, now: datetime) -> bool:
        """The priority offer of this attempt is still unacked past its ack deadline."""
        values = {"request_id": request_id, "attempt": attempt, "now": now}
        return await self._db.fetch_one(Prepared(_OVERDUE, values)) is not None

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

    async def owed(self, request_ids: Iterable[str]) -> list[SessionRequest]:
        """Those of these requests whose last change devices have still to hear of."""
        rows = await self._db.fetch_all(sa.select(sr).where(sr.c.id.in_(list(request_ids)), sr.c.owed_at.is_not(None)))
        return [SessionRequest.from_row(row) for row in rows]

    # Writing

    async def claim_owed(self, stale_before: datetime, now: datetime, limit: int) -> list[SessionRequest]:
        """Requests owed since before `stale_before` (their process died, or could not publish), taken by this
        caller: their mark moves to `now`, so that no other process takes them until they are stale again."""
        stale = await self._db.fetch_all(
            sa.select(sr.c.id).where(sr.c.owed_at <= stale_before).order_by(sr.c.owed_at).limit(limit)
        )
        if not stale:  # the common case, read without a write (SQLite would take its write lock for nothing)
            return []
        rows = await self._db.fetch_all(
            sr.update()
            .where(sr.c.id.in_([str(row["id"]) for row in stale]), sr.c.owed_at <= stale_before)
            .values(owed_at=now)
            .returning(*sr.c)
        )
        return [SessionRequest.from_row(row) for row in rows]

    async def settle(self, delivered: Mapping[str, datetime]) -> None:
        """Clear the marks of delivered changes, each only if no later change marked its request again: one
        statement for the batch, of one shape whatever its size (compiled once per process)."""
        dialect = self._db.url.dialect
        done = [{"id": request_id, "at": as_stored(at, dialect)} for request_id, at in delivered.items()]
        await self._db.execute(_SETTLE[dialect].bindparams(done=json.dumps(done)))

    async def ack_all(self, acks: Sequence[OfferAck]) -> set[tuple[str, int]]:
        """Mark the offers these acks confirm as acked, with their events, in one transaction; the (request id,
        attempt) of each offer marked now (several acks of one offer mark it once, logged as the first's)."""
        rows = [
            {"request_id": a.request_id, "attempt": a.attempt, "mechanic": a.mechanic_id, "workshop": a.workshop_id}
            for a in acks
        ]
        now = utc_now()
        if self._one_statement:
            marked = await self._db.fetch_all(_ACK_ALL_POSTGRESQL.bindparams(acks=json.dumps(rows), now=now))
            return {(str(r["id"]), int(r["attempt"])) for r in marked}
        async with self._db.transaction():
            marked = await self._db.fetch_all(_MARK_ACKED_SQLITE.bindparams(acks=json.dumps(rows), now=now))
            done = {(str(r["id"]), int(r["attempt"])) for r in marked}
            first = {(row["request_id"], row["attempt"]): row for row in reversed(rows)}
            if done:
                acked = json.dumps([first[key] for key in done])
                await self._db.execute(_LOG_ACKED_SQLITE.bindparams(acks=acked, now=now))
        return done

    async def dismiss_favorite_prompt(self, request_id: str) -> None:
        await self._db.execute(
            sr.update()
            .where(sr.c.id == request_id, sr.c.favorite_prompt_dismissed_at.is_(None))
            .values(favorite_prompt_dismissed_at=utc_now())
        )

    async def log(self, request_id: str, note: Note) -> None:
        """An event that changes nothing else (a push and its outcome)."""
        await self._db.execute(request_events.insert().values(self._event_values(request_id, note, utc_now())))

    async def exclude(self, request_id: str, mechanic_id: str, reason: str, note: Note) -> None:
        """Never offer this request to this mechanic again, with its event, atomically."""
        async with self._db.transaction():
            await self._db.execute(
                insert_ignoring_conflict(self._db, request_exclusions).values(
                    request_id=request_id, mechanic_id=mechanic_id, reason=reason
                )
            )
            await self._db.execute(request_events.insert().values(self._event_values(request_id, note, utc_now())))

    async def create(self, change: Change, values: Mapping[str, Any]) -> SessionRequest | None:
        """Store a new request (`values` of every `CREATED_COLUMNS` but the id) with its first events; None when
        a conflict refused it (its Checkout Session already made one, or an open request for this favorite)."""
        return await self.commit(change, {**values, "id": str(uuid.uuid4())})

    async def commit(self, change: Change, values: Mapping[str, Any]) -> SessionRequest | None:
        """Make `change` with this call's `values`, its events and side rows, atomically.

        Returns the request as changed, or None when its conditions no longer hold (someone else won).
        PostgreSQL does it all in one statement (`WITH changed AS (UPDATE … RETURNING *), logged AS (INSERT INTO
        request_events SELECT … FROM changed) …`): one round trip, and no event or side row unless the change
        matched. SQLite runs the same statements in one transaction.
        """
        values = {**values, "event_at": utc_now()}
        built = self._built(change)
        if self._one_statement:
            row = await self._db.fetch_one(Prepared(built.statement, values))
            return SessionRequest.from_row(row) if row is not None else None

        def with_the_row(row: Record) -> list[Prepared]:
            changed = row._mapping
            with_row = {**values, **{f"row_{column}": changed[column] for column in sr.c.keys()}}
            return [Prepared(statement, with_row) for statement in built.after]

        row = await self._db.write_then(Prepared(built.statement, values), with_the_row)
        return SessionRequest.from_row(row) if row is not None else None

    def _built(self, change: Change) -> _Built:
        built = self._shapes.get(change)
        if built is None:
            built = self._shapes[change] = self._build(change)
        return built

    def _build(self, change: Change) -> _Built:
        if change.creates:
            base: sa.Insert | sa.Update = insert_ignoring_conflict(self._db, sr).values(change.values)
        else:
            base = sr.update().where(sr.c.id == param("request_id"), *change.when).values(change.values)
        if not self._one_statement:
            row = _BoundRow()
            notes = change.notes(row)
            events = request_events.insert().values([_event_row(row["id"], n, cast=False) for n in notes])
            return _Built(base.returning(*sr.c), (events, *change.also(row)))
        changed = base.returning(*sr.c).cte("changed")
        rows = [sa.select(*_event_row(changed.c.id, n, cast=True).values()) for n in change.notes(changed.c)]
        source = rows[0] if len(rows) == 1 else sa.union_all(*rows)
        statement = sa.select(*changed.c).add_cte(
            request_events.insert().from_select(list(EVENT_COLUMNS), source).cte("logged")
        )
        for n, side in enumerate(change.also(changed.c)):
            statement = statement.add_cte(side.cte(f"side_{n}"))
        return _Built(statement, ())

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


@dataclass(frozen=True)
class _Built:
    statement: ClauseElement  # returns the changed row (and on PostgreSQL writes everything else too)
    after: tuple[ClauseElement, ...]  # SQLite: the events and side rows, run once the row is known


class _BoundRow:
    """The changed row's columns as bound parameters `row_<column>` (SQLite's second statement)."""

    def __getitem__(self, column: str) -> ColumnElement[Any]:
        return sa.bindparam(f"row_{column}", type_=sr.c[column].type)


EVENT_COLUMNS = ("request_id", "at", "kind", "mechanic_id", "attempt", "detail")


def _event_row(request_id: ColumnElement[Any], note: Note, *, cast: bool) -> dict[str, ColumnElement[Any]]:
    """One event row as SQL, each field typed as its column. PostgreSQL needs the casts for a `UNION ALL` of rows
    to be well typed; SQLite must not have them (its CAST to a date gives a number)."""

    def typed(column: str, value: Any) -> ColumnElement[Any]:
        kind = request_events.c[column].type
        if isinstance(value, str) and column == "detail":
            value = value[:MAX_DETAIL]
        if isinstance(value, sa.BindParameter) and value.type._isnull:
            value = sa.bindparam(value.key, type_=kind)
        expression = value if isinstance(value, ColumnElement) else sa.literal(value, kind)
        return sa.cast(expression, kind) if cast else expression

    return {
        "request_id": request_id,
        "at": typed("at", sa.bindparam("event_at")),
        "kind": typed("kind", note.kind.value),
        "mechanic_id": typed("mechanic_id", note.mechanic_id),
        "attempt": typed("attempt", note.attempt),
        "detail": typed("detail", note.detail),
    }
