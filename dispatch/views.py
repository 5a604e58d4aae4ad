"""Read models: what the customer, the mechanic and operations see of session requests, as the API returns them.

The adapters read these and nothing else of the request store; each view is assembled here from the services
that hold its parts (requests, mechanics' and workshops' names, favorites). The types are the HTTP contract's
(`api/schemas.py` lists them with the rest, and the OpenAPI document is generated from them).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from base.clock import iso
from base.errors import RequestNotFound
from dispatch import models
from dispatch.favorites import Favorites
from dispatch.mechanics import Mechanics, ProviderType
from dispatch.offers import assigned_frame
from dispatch.requests import Requests, RequestSearch
from dispatch.wording import customer_message
from dispatch.workshops import Workshops

Timestamp = Annotated[str, msgspec.Meta(description="ISO-8601 UTC with milliseconds")]
LIST_LIMIT = 50


class FavoriteChoice(msgspec.Struct, frozen=True):
    """One favorite the prompt offers to add: the mechanic who gave the session, or the workshop they work for."""

    provider_id: str
    provider_type: str
    name: str


class FavoritePrompt(msgspec.Struct, frozen=True):
    """After a completed session: the mechanic who gave it, and what can still be added to the favorites."""

    mechanic_id: str
    name: str
    choices: list[FavoriteChoice]


class SessionRequest(msgspec.Struct, frozen=True):
    """The customer's view of a request (operations see the same)."""

    id: str
    status: str
    phase: str | None
    routing: str
    routing_type: str
    session_type: str
    plan_code: str
    preferred_mechanic_id: str | None
    preferred_workshop_id: str | None
    mechanic_id: str | None
    mechanic_name: str | None
    attempt: int
    priority_window_minutes: int | None
    priority_deadline: Timestamp | None
    priority_notified_at: Timestamp | None
    fallback_broadcast_at: Timestamp | None
    created_at: Timestamp | None
    accepted_at: Timestamp | None
    arm: str
    message: Annotated[str, msgspec.Meta(description="The sentence the customer app shows.")]
    favorite_prompt: FavoritePrompt | None


class SessionRequests(msgspec.Struct, frozen=True):
    requests: list[SessionRequest]


class AssignedSession(msgspec.Struct, frozen=True):
    """An accepted session, as the socket's `assigned` frame tells it, with its plan."""

    request_id: str
    customer_name: str
    session_type: str
    plan_code: str
    accepted_at: str | None


class MechanicSessions(msgspec.Struct, frozen=True):
    sessions: list[AssignedSession]


class Event(msgspec.Struct, frozen=True):
    at: Timestamp | None
    kind: str
    mechanic_id: str | None
    mechanic_name: str | None  # kept for deleted mechanics too: a request's history keeps its names
    attempt: int | None
    detail: str | None


class Events(msgspec.Struct, frozen=True):
    request_id: str
    events: list[Event]


class Views:
    def __init__(self, requests: Requests, mechanics: Mechanics, workshops: Workshops, favorites: Favorites) -> None:
        self._requests = requests
        self._mechanics = mechanics
        self._workshops = workshops
        self._favorites = favorites

    async def request(self, request: models.SessionRequest) -> SessionRequest:
        """A request as its customer sees it: names, the sentence to show, the favorites prompt."""
        names = await self._mechanics.names([i for i in (request.preferred_mechanic_id, request.mechanic_id) if i])
        if request.preferred_workshop_id is not None:
            names[request.preferred_workshop_id] = await self._workshops.name_of(request.preferred_workshop_id)
        return SessionRequest(
            id=request.id,
            status=request.status.value,
            phase=request.phase.value if request.phase else None,
            routing=request.routing.value,
            routing_type=request.routing_type,
            session_type=request.session_type,
            plan_code=request.plan_code,
            preferred_mechanic_id=request.preferred_mechanic_id,
            preferred_workshop_id=request.preferred_workshop_id,
            mechanic_id=request.mechanic_id,
            mechanic_name=names.get(request.mechanic_id) if request.mechanic_id else None,
            attempt=request.attempt,
            priority_window_minutes=request.priority_window_minutes,
            priority_deadline=iso(request.priority_deadline),
            priority_notified_at=iso(request.priority_notified_at),
            fallback_broadcast_at=iso(request.fallback_broadcast_at),
            created_at=iso(request.created_at),
            accepted_at=iso(request.accepted_at),
            arm=request.arm,
            message=customer_message(request, names),
            favorite_prompt=await self._favorite_prompt(request, names),
        )

    async def _favorite_prompt(self, request: models.SessionRequest, names: dict[str, str]) -> FavoritePrompt | None:
        """After a completed session: offer to save the mechanic and the workshop they work for, those not yet
        favorites, until it is dismissed."""
        if request.status is not models.Status.COMPLETED or request.mechanic_id is None:
            return None
        if request.favorite_prompt_dismissed_at is not None:
            return None
        name = names.get(request.mechanic_id, "")
        offered = [FavoriteChoice(request.mechanic_id, ProviderType.INDEPENDENT.value, name)]
        workshop_id = await self._mechanics.workshop_of(request.mechanic_id)
        if workshop_id is not None:
            workshop_name = await self._workshops.name_of(workshop_id)
            offered.append(FavoriteChoice(workshop_id, ProviderType.WORKSHOP.value, workshop_name))
        saved = await self._favorites.which_are_favorites(request.customer_id, [c.provider_id for c in offered])
        choices = [c for c in offered if c.provider_id not in saved]
        return FavoritePrompt(mechanic_id=request.mechanic_id, name=name, choices=choices) if choices else None

    async def request_for(self, request_id: str, customer_id: str | None) -> SessionRequest:
        """One request, for its customer (`customer_id`) or for operations (None); another's is not found."""
        found = await self._requests.get(request_id)
        if customer_id is not None and found.customer_id != customer_id:
            raise RequestNotFound()
        return await self.request(found)

    async def customer_requests(self, customer_id: str, *, open_only: bool) -> SessionRequests:
        """The customer's open requests (pending or accepted) or their most recent ones, newest first."""
        found = await self._requests.of_customer(customer_id, open_only=open_only, limit=LIST_LIMIT)
        return SessionRequests(requests=[await self.request(r) for r in found])

    async def search(self, wanted: RequestSearch) -> SessionRequests:
        """Requests matching `wanted`, newest first: open ones are what operations watches, any what support looks
        up."""
        return SessionRequests(requests=[await self.request(r) for r in await self._requests.search(wanted)])

    async def mechanic_sessions(self, mechanic_id: str) -> MechanicSessions:
        """The mechanic's accepted sessions not yet completed, oldest first (the socket greets with the same)."""
        assigned = await self._requests.assigned_to(mechanic_id, LIST_LIMIT)
        sessions = [
            AssignedSession(
                request_id=frame.request_id,
                customer_name=frame.customer_name,
                session_type=frame.session_type,
                plan_code=request.plan_code,
                accepted_at=frame.accepted_at,
            )
            for request, frame in ((r, assigned_frame(r)) for r in assigned)
        ]
        return MechanicSessions(sessions=sessions)

    async def timeline(self, request_id: str) -> Events:
        """A request's event log, oldest first, with the names of the mechanics in it."""
        request = await self._requests.get(request_id)
        events = await self._requests.events_of(request.id)
        names = await self._mechanics.names(sorted({e.mechanic_id for e in events if e.mechanic_id}))
        return Events(
            request_id=request.id,
            events=[
                Event(
                    at=iso(e.at),
                    kind=e.kind,
                    mechanic_id=e.mechanic_id,
                    mechanic_name=names.get(e.mechanic_id) if e.mechanic_id else None,
                    attempt=e.attempt,
                    detail=e.detail,
                )
                for e in events
            ],
        )
