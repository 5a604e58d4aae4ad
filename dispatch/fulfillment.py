"""Paid bookings: what a Stripe Checkout Session carries, and the request a paid one creates, exactly once.

Stripe delivers each event at least once, retries for days and does not keep order. The event id and the
Checkout Session id are unique keys, written in the same transaction as the request, so a duplicate event or a
second event for the same session creates nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from databases import Database

from base.clock import utc_now
from base.errors import InvalidInput
from base.ids import canonical_id
from base.sql import insert_ignoring_conflict
from base.text import printable
from dispatch.booking import NewRequest, PreparedRequest
from dispatch.models import Routing, RoutingType, SessionRequest
from dispatch.plans import Plan, Plans
from dispatch.tables import stripe_events
from dispatch.usecases import Dispatcher

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    CREATED = "created"
    DUPLICATE_EVENT = "duplicate_event"
    DUPLICATE_SESSION = "duplicate_session"
    NOT_PAID = "not_paid"
    IGNORED = "ignored"
    INVALID = "invalid"


@dataclass(frozen=True)
class PaidCheckout:
    event_id: str
    event_type: str
    checkout_session_id: str
    metadata: dict[str, str]
    customer_name: str | None = None


def metadata_for(new: NewRequest, prepared: PreparedRequest, routing_type: str) -> dict[str, str]:
    """What a Checkout Session carries so that the webhook can create the request (Stripe wants strings): what
    the customer asked for, with the favorite's type as decided."""
    values = {
        "customer_id": new.customer_id,
        "preferred_mechanic_id": new.preferred_mechanic_id or "",
        "preferred_workshop_id": new.preferred_workshop_id or "",
        "routing_type": routing_type,
        "routing": new.routing,
        "provider_type": prepared.provider_type.value if prepared.provider_type else "",
        "session_type": new.session_type,
        "plan_code": new.plan_code,
        "arm": prepared.arm.value,
    }
    if new.customer_name:
        values["customer_name"] = new.customer_name[:200]
    return values


def _new_request(metadata: dict[str, str]) -> NewRequest:
    missing = [f for f in ("customer_id", "session_type", "plan_code", "routing") if not metadata.get(f)]
    if missing:
        raise InvalidInput(f"Checkout metadata lacks {', '.join(missing)}.")
    if canonical_id(metadata["customer_id"]) is None:
        raise InvalidInput("Checkout metadata's customer_id must be a UUID.")
    return NewRequest(
        customer_id=metadata["customer_id"],
        customer_name=printable(metadata.get("customer_name")),
        session_type=metadata["session_type"],
        plan_code=metadata["plan_code"],
        routing=metadata["routing"],
        preferred_mechanic_id=metadata.get("preferred_mechanic_id") or None,
        preferred_workshop_id=metadata.get("preferred_workshop_id") or None,
        provider_type=metadata.get("provider_type") or None,
    )


@dataclass(frozen=True)
class Checkout:
    """What a Checkout Session for a booking is made of: the plan it charges and the booking in its metadata."""

    plan: Plan
    metadata: dict[str, str]


class Fulfillment:
    def __init__(self, database: Database, dispatcher: Dispatcher, plans: Plans) -> None:
        self._db = database
        self._dispatcher = dispatcher
        self._plans = plans

    async def checkout(self, new: NewRequest) -> Checkout:
        """A booking to be paid for: validated and routed as it would be booked now (a customer with an open
        request for this favorite is told so before paying), carried in the session's metadata."""
        prepared = await self._dispatcher.prepare(new)
        await self._dispatcher.refuse_second_open_request(prepared)
        is_broadcast = prepared.routing is Routing.BROADCAST
        routing_type = RoutingType.BROADCAST if is_broadcast else RoutingType.PRIORITY_BROADCAST
        plan = await self._plans.get(prepared.plan_code)
        return Checkout(plan, metadata_for(new, prepared, routing_type.value))

    async def fulfill(self, paid: PaidCheckout) -> tuple[Outcome, SessionRequest | None]:
        """Create the request a paid checkout bought, unless this event or this session was already handled.

        Malformed metadata raises InvalidInput and records nothing, so that a fixed retry can still succeed.
        """
        new = _new_request(paid.metadata)
        prepared = await self._dispatcher.prepare(new, favorite_gone_means_broadcast=True)
        async with self._db.transaction():
            recorded = await self._db.fetch_one(
                insert_ignoring_conflict(self._db, stripe_events)
                .values(
                    id=paid.event_id,
                    type=paid.event_type,
                    checkout_session_id=paid.checkout_session_id,
                    received_at=utc_now(),
                    outcome=Outcome.CREATED.value,
                )
                .returning(stripe_events.c.id)
            )
            if recorded is None:
                return Outcome.DUPLICATE_EVENT, None
            request = await self._dispatcher.insert(prepared, paid.checkout_session_id)
            if request is None:
                await self._db.execute(
                    stripe_events.update()
                    .where(stripe_events.c.id == paid.event_id)
                    .values(outcome=Outcome.DUPLICATE_SESSION.value)
                )
                return Outcome.DUPLICATE_SESSION, None
        await self._dispatcher.start_routing(request)
        return Outcome.CREATED, request
