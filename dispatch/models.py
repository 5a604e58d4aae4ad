"""The states a session request moves through, and its read model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from base.clock import as_utc


class Status(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class Phase(StrEnum):
    PRIORITY = "priority"
    BROADCAST = "broadcast"


class Routing(StrEnum):
    """The customer's choice in the availability modal."""

    PRIORITY = "priority"
    NOTIFY_AND_WAIT = "notify_and_wait"
    BROADCAST = "broadcast"


class RoutingType(StrEnum):
    """The seed's `routing_type` column."""

    PRIORITY_BROADCAST = "priority_broadcast"
    BROADCAST = "broadcast"


class SessionType(StrEnum):
    CHAT = "chat"
    VIDEO = "video"
    DIAGNOSTIC = "diagnostic"


class FallbackReason(StrEnum):
    """Why a request left its priority phase (or came back to the broadcast after being accepted)."""

    WINDOW = "window"
    DECLINED = "declined"
    MISSED_ACKS = "missed_acks"
    MECHANIC_CANCELLED = "mechanic_cancelled"
    MECHANIC_DELETED = "mechanic_deleted"
    WORKSHOP_GONE = "workshop_gone"  # the favorite workshop was deleted or has no members left


class EventKind(StrEnum):
    CREATED = "created"
    OFFERED = "offered"
    ACKED = "acked"
    RESENT = "resent"
    DECLINED = "declined"
    FELL_BACK = "fell_back"
    BROADCAST = "broadcast"
    ACCEPTED = "accepted"
    MECHANIC_CANCELLED = "mechanic_cancelled"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    PUSHED = "pushed"  # a Web Push to one of the favorite's devices: its outcome in the detail


class OfferKind(StrEnum):
    PRIORITY = "priority"
    BROADCAST = "broadcast"


class RevokeReason(StrEnum):
    TAKEN = "taken"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The priority phase is always a request's first attempt: every later phase is a broadcast.
PRIORITY_ATTEMPT = 1
MAX_ATTEMPT = 2**31 - 1  # the `attempt` column is a 32-bit integer


def offer_id(request_id: str, attempt: int, kind: OfferKind) -> str:
    """Offer ids name the request, attempt and kind, so any process can match an ack without shared state, and
    acks of broadcast offers (thousands per fan-out) need no database work at all."""
    return f"{request_id}.{attempt}.{kind.value}"


def parse_offer_id(value: str) -> tuple[str, int, OfferKind] | None:
    parts = value.rsplit(".", 2)
    # ASCII digits only, and no more than an attempt can hold: `²` passes `isdigit()`.
    if len(parts) != 3 or not (parts[1].isascii() and parts[1].isdigit()) or parts[2] not in set(OfferKind):
        return None
    attempt = int(parts[1])
    return (parts[0], attempt, OfferKind(parts[2])) if 1 <= attempt <= MAX_ATTEMPT else None


@dataclass(frozen=True)
class OfferAck:
    """A device's ack of the priority offer of `attempt` of a request, by a mechanic (of `workshop_id`)."""

    request_id: str
    attempt: int
    mechanic_id: str
    workshop_id: str | None


@dataclass(frozen=True)
class Columns:
    """A row's columns as the domain reads them: ids as text, times in UTC (SQLite hands back naive ones)."""

    mapping: Any

    def text(self, name: str) -> str | None:
        value = self.mapping[name]
        return str(value) if value is not None else None

    def time(self, name: str) -> datetime | None:
        value = self.mapping[name]
        return as_utc(value) if value is not None else None


@dataclass(frozen=True)
class SessionRequest:
    id: str
    customer_id: str
    customer_name: str | None
    session_type: str
    plan_code: str
    status: Status
    phase: Phase | None
    routing: Routing
    routing_type: str
    provider_type: str | None
    preferred_mechanic_id: str | None
    preferred_workshop_id: str | None
    mechanic_id: str | None
    attempt: int
    offer_resends: int
    priority_window_minutes: int | None
    priority_deadline: datetime | None
    priority_notified_at: datetime | None
    offer_acked_at: datetime | None
    ack_deadline: datetime | None
    fallback_broadcast_at: datetime | None
    reroute_reason: FallbackReason | None
    created_at: datetime
    accepted_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    arm: str
    checkout_session_id: str | None
    favorite_prompt_dismissed_at: datetime | None
    owed_at: datetime | None  # a change devices must still hear of (dispatch/owed.py)

    @classmethod
    def from_row(cls, row: Any) -> SessionRequest:
        m = row._mapping
        ts, text = Columns(m).time, Columns(m).text
        return cls(
            id=str(m["id"]),
            customer_id=str(m["customer_id"]),
            customer_name=m["customer_name"],
            session_type=m["session_type"],
            plan_code=m["plan_code"],
            status=Status(m["status"]),
            phase=Phase(m["phase"]) if m["phase"] else None,
            routing=Routing(m["routing"]),
            routing_type=m["routing_type"],
            provider_type=m["provider_type"],
            preferred_mechanic_id=text("preferred_mechanic_id"),
            preferred_workshop_id=text("preferred_workshop_id"),
            mechanic_id=text("mechanic_id"),
            attempt=m["attempt"],
            offer_resends=m["offer_resends"],
            priority_window_minutes=m["priority_window_minutes"],
            priority_deadline=ts("priority_deadline"),
            priority_notified_at=ts("priority_notified_at"),
            offer_acked_at=ts("offer_acked_at"),
            ack_deadline=ts("ack_deadline"),
            fallback_broadcast_at=ts("fallback_broadcast_at"),
            reroute_reason=FallbackReason(m["reroute_reason"]) if m["reroute_reason"] else None,
            created_at=as_utc(m["created_at"]),
            accepted_at=ts("accepted_at"),
            completed_at=ts("completed_at"),
            cancelled_at=ts("cancelled_at"),
            arm=m["arm"],
            checkout_session_id=m["checkout_session_id"],
            favorite_prompt_dismissed_at=ts("favorite_prompt_dismissed_at"),
            owed_at=ts("owed_at"),
        )
