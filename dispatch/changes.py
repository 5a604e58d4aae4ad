"""Every change a request goes through, as SQL shapes built once per process.

A `Change` says what the request must still be (`when`), what it becomes (`values`), the event rows it writes
(`notes`) and the rows it touches beside the request (`also`). Each call supplies its values by name
(`param("attempt")`); notes and side rows may read the changed row's columns (`row["attempt"]` is the attempt
*after* the change). `dispatch/requests.py` turns a change into one statement on PostgreSQL and one transaction
on SQLite, and builds each only once: building SQL costs more than running it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ColumnElement

from dispatch.models import EventKind, Phase, RoutingType, Status
from dispatch.tables import idempotency_keys, request_exclusions, session_requests

sr = session_requests


class Row(Protocol):
    """The changed row's columns: a `WITH` query's on PostgreSQL, bound parameters on SQLite."""

    def __getitem__(self, column: str) -> ColumnElement[Any]: ...


def param(name: str) -> sa.BindParameter[Any]:
    """A value each call supplies, by name."""
    return sa.bindparam(name)


@dataclass(frozen=True)
class Note:
    """One row of a request's event log: each field a value fixed by the change, a `param`, or a column of the
    changed row."""

    kind: EventKind
    mechanic_id: Any = None
    attempt: Any = None
    detail: Any = None


def _no_side_rows(row: Row) -> Sequence[sa.Insert | sa.Update]:
    return ()


@dataclass(frozen=True, eq=False)  # identity: a change is a key of the built-statement cache
class Change:
    values: Mapping[str, Any]
    notes: Callable[[Row], Sequence[Note]]
    when: tuple[ColumnElement[bool], ...] = ()
    also: Callable[[Row], Sequence[sa.Insert | sa.Update]] = field(default=_no_side_rows)
    creates: bool = False  # an INSERT of a new request rather than an UPDATE of `param("request_id")`


def excluding(reason: str) -> Callable[[Row], Sequence[sa.Insert]]:
    """A side row: never offer this request to `param("mechanic")` again."""

    def side(row: Row) -> Sequence[sa.Insert]:
        chosen = sa.select(row["id"], param("mechanic"), sa.literal(reason)).where(sa.true())
        insert = postgresql.insert(request_exclusions)  # its ON CONFLICT DO NOTHING compiles for SQLite too
        return [insert.from_select(["request_id", "mechanic_id", "reason"], chosen).on_conflict_do_nothing()]

    return side


FAVORITE_ACCEPT = "by the favorite"


def accepted_by(row: Row) -> ColumnElement[Any]:
    """The accept's detail: whether the favorite took it (for a workshop, any member), which the KPIs count."""
    by_favorite = sa.or_(
        row["preferred_mechanic_id"] == param("mechanic"), row["preferred_workshop_id"] == param("workshop")
    )
    return sa.case((by_favorite, sa.literal(FAVORITE_ACCEPT)), else_=sa.null())


def resend_number(row: Row) -> ColumnElement[Any]:
    return sa.literal("resend ") + sa.cast(row["offer_resends"], sa.String)


_pending = sr.c.status == Status.PENDING.value
_priority = sr.c.phase == Phase.PRIORITY.value
_this_attempt = sr.c.attempt == param("attempt")
# `param("mechanic")` is the favorite: the favorite mechanic, or a member of the favorite workshop (the caller
# supplies the mechanic's workshop as `param("workshop")`, None for an independent).
_by_the_favorite = sa.or_(
    sr.c.preferred_mechanic_id == param("mechanic"), sr.c.preferred_workshop_id == param("workshop")
)

# A request is stored with its first events; with an online favorite, its priority offer is marked sent in the
# same write. One shape per set of first events.
CREATED_COLUMNS = (
    "id",
    "customer_id",
    "customer_name",
    "session_type",
    "plan_code",
    "status",
    "preferred_mechanic_id",
    "preferred_workshop_id",
    "routing_type",
    "priority_window_minutes",
    "created_at",
    "routing",
    "provider_type",
    "phase",
    "priority_deadline",
    "arm",
    "checkout_session_id",
    "priority_notified_at",
    "ack_deadline",
    "owed_at",
)
_created = {column: param(column) for column in CREATED_COLUMNS}
# Every change that devices must hear of marks the request owed in its own statement; `dispatch/owed.py` clears
# the mark once the frames are published, and re-delivers from the request's state whatever stays owed.
_owed = {"owed_at": param("now")}
CREATE_BROADCAST = Change(
    values=_created,
    notes=lambda row: [
        Note(EventKind.CREATED, detail=param("created_detail")),
        Note(EventKind.BROADCAST, attempt=row["attempt"]),
    ],
    creates=True,
)
CREATE_OFFERED = Change(
    values=_created,
    notes=lambda row: [
        Note(EventKind.CREATED, detail=param("created_detail")),
        Note(EventKind.OFFERED, row["preferred_mechanic_id"], row["attempt"], "priority"),
    ],
    creates=True,
)
CREATE_WAITING = Change(
    values=_created,
    notes=lambda row: [Note(EventKind.CREATED, detail=param("created_detail"))],
    creates=True,
)


def remembering_the_key(row: Row) -> Sequence[sa.Insert]:
    """A side row: the Idempotency-Key that made this booking, in the booking's own statement."""
    text = sa.String
    chosen = sa.select(
        sa.cast(row["customer_id"], text),
        sa.cast(sa.bindparam("idempotency_key", type_=text), text),
        sa.cast(sa.bindparam("idempotency_fingerprint", type_=text), text),
        row["id"],
        row["created_at"],
    ).where(sa.true())
    return [idempotency_keys.insert().from_select(["owner", "key", "fingerprint", "request_id", "created_at"], chosen)]


# The same bookings made with an Idempotency-Key: a key already stored makes the whole statement fail.
KEYED = {
    create: replace(create, also=remembering_the_key) for create in (CREATE_BROADCAST, CREATE_OFFERED, CREATE_WAITING)
}

MARK_OFFERED = Change(
    when=(_this_attempt, _pending, _priority, sr.c.priority_notified_at.is_(None)),
    values={"priority_notified_at": param("now"), "ack_deadline": param("next_ack_deadline"), **_owed},
    notes=lambda row: [Note(EventKind.OFFERED, row["preferred_mechanic_id"], row["attempt"], "priority")],
)

_overdue = (_this_attempt, _pending, _priority, sr.c.offer_acked_at.is_(None), sr.c.ack_deadline <= param("now"))
OVERDUE = _overdue  # what "the ack is overdue" means, for the caller that then falls back

RESEND = Change(
    when=(*_overdue, sr.c.offer_resends < param("max_resends")),
    values={"offer_resends": sr.c.offer_resends + 1, "ack_deadline": param("next_ack_deadline"), **_owed},
    notes=lambda row: [Note(EventKind.RESENT, row["preferred_mechanic_id"], row["attempt"], resend_number(row))],
)

ACCEPT = Change(
    when=(
        _this_attempt,
        _pending,
        sa.or_(sr.c.phase == Phase.BROADCAST.value, _by_the_favorite),
        ~sa.exists(
            sa.select(request_exclusions.c.request_id).where(
                request_exclusions.c.request_id == sr.c.id,
                request_exclusions.c.mechanic_id == param("mechanic"),
            )
        ),
    ),
    values={
        "status": Status.ACCEPTED.value,
        "phase": None,
        "mechanic_id": param("mechanic"),
        "accepted_at": param("now"),
        "ack_deadline": None,
        **_owed,
    },
    notes=lambda row: [Note(EventKind.ACCEPTED, param("mechanic"), param("attempt"), accepted_by(row))],
)

_fall_back_values = {
    "phase": Phase.BROADCAST.value,
    "attempt": sr.c.attempt + 1,
    "fallback_broadcast_at": param("now"),
    "reroute_reason": param("reason"),
    "ack_deadline": None,
    **_owed,
}


def _fell_back(row: Row) -> list[Note]:
    return [
        Note(EventKind.FELL_BACK, row["preferred_mechanic_id"], row["attempt"], param("reason")),
        Note(EventKind.BROADCAST, attempt=row["attempt"]),
    ]


FALL_BACK = Change(when=(_this_attempt, _pending, _priority), values=_fall_back_values, notes=_fell_back)
FALL_BACK_AT_DEADLINE = Change(
    when=(_this_attempt, _pending, _priority, sr.c.priority_deadline <= param("now")),
    values=_fall_back_values,
    notes=_fell_back,
)
FALL_BACK_DECLINED = Change(
    when=(_this_attempt, _pending, _priority, sr.c.preferred_mechanic_id == param("mechanic")),
    values=_fall_back_values,
    notes=lambda row: [Note(EventKind.DECLINED, param("mechanic"), param("attempt")), *_fell_back(row)],
    also=excluding("declined"),
)

GIVE_BACK = Change(
    when=(sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == param("mechanic")),
    values={
        "status": Status.PENDING.value,
        "phase": Phase.BROADCAST.value,
        "attempt": sr.c.attempt + 1,
        "mechanic_id": None,
        "accepted_at": None,
        "reroute_reason": param("reason"),
        "fallback_broadcast_at": sa.case(
            (
                sa.and_(
                    sr.c.routing_type == RoutingType.PRIORITY_BROADCAST.value, sr.c.fallback_broadcast_at.is_(None)
                ),
                param("now"),
            ),
            else_=sr.c.fallback_broadcast_at,
        ),
        **_owed,
    },
    notes=lambda row: [
        Note(EventKind.MECHANIC_CANCELLED, param("mechanic"), row["attempt"], param("detail")),
        Note(EventKind.FELL_BACK, attempt=row["attempt"], detail=param("reason")),
        Note(EventKind.BROADCAST, attempt=row["attempt"]),
    ],
    also=excluding("gave_back"),
)

CANCEL = Change(
    when=(sa.or_(_pending, sr.c.status == Status.ACCEPTED.value),),
    values={
        "status": Status.CANCELLED.value,
        "phase": None,
        "cancelled_at": param("now"),
        "ack_deadline": None,
        **_owed,
    },
    notes=lambda row: [Note(EventKind.CANCELLED, detail="by customer")],
)

COMPLETE = Change(
    when=(sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == param("mechanic")),
    values={"status": Status.COMPLETED.value, "completed_at": param("now")},
    notes=lambda row: [Note(EventKind.COMPLETED, param("mechanic"))],
)
