"""Session requests: book, read, cancel, complete, and the favorites prompt after a session."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import schemas
from api.auth import Role
from api.context import authenticate, new_request_from, services
from api.idempotency import once
from api.responses import read_json, typed
from api.runtime import Services
from api.schemas import BookingBody
from base.clock import iso
from base.errors import InvalidInput, PaymentRequired, RequestNotFound
from dispatch.models import SessionRequest, Status
from dispatch.offers import assigned_frame
from dispatch.wording import customer_message

LIST_LIMIT = 50


async def request_view(svc: Services, request: SessionRequest) -> schemas.SessionRequest:
    names = await svc.mechanics.names([i for i in (request.preferred_mechanic_id, request.mechanic_id) if i])
    if request.preferred_workshop_id is not None:
        names[request.preferred_workshop_id] = await svc.workshops.name_of(request.preferred_workshop_id)
    return schemas.SessionRequest(
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
        favorite_prompt=await _favorite_prompt(svc, request, names),
    )


async def _favorite_prompt(
    svc: Services, request: SessionRequest, names: dict[str, str]
) -> schemas.FavoritePrompt | None:
    """After a completed session: offer to save the mechanic, unless they already are a favorite or it was dismissed."""
    if request.status is not Status.COMPLETED or request.mechanic_id is None:
        return None
    if request.favorite_prompt_dismissed_at is not None:
        return None
    if await svc.favorites.is_favorite(request.customer_id, request.mechanic_id):
        return None
    return schemas.FavoritePrompt(mechanic_id=request.mechanic_id, name=names.get(request.mechanic_id, ""))


async def create_request(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)

    async def book() -> Response:
        body = await read_json(request, BookingBody)
        if svc.settings.payments_enabled:
            raise PaymentRequired()
        created = await svc.dispatcher.book(new_request_from(principal, body))
        return typed(await request_view(svc, created), status_code=201)

    return await once(request, svc.database, principal.sub, svc.settings.max_body_bytes, book)


async def list_own_requests(request: Request) -> Response:
    """The customer's open requests (pending or accepted) or their most recent ones, newest first: what a
    reloaded console shows as "Your request"."""
    principal = authenticate(request, Role.CUSTOMER)
    which = request.query_params.get("status", "open")
    if which not in ("open", "recent"):
        raise InvalidInput("status must be one of: open, recent.")
    svc = services(request)
    found = await svc.dispatcher.requests.of_customer(principal.sub, open_only=which == "open", limit=LIST_LIMIT)
    return typed(schemas.SessionRequests(requests=[await request_view(svc, r) for r in found]))


async def list_own_sessions(request: Request) -> Response:
    """The mechanic's accepted sessions not yet completed, oldest first (the socket greets with the same)."""
    principal = authenticate(request, Role.MECHANIC)
    svc = services(request)
    assigned = await svc.dispatcher.requests.assigned_to(principal.sub, LIST_LIMIT)
    sessions = [
        schemas.AssignedSession(
            request_id=frame.request_id,
            customer_name=frame.customer_name,
            session_type=frame.session_type,
            plan_code=r.plan_code,
            accepted_at=frame.accepted_at,
        )
        for r, frame in ((r, assigned_frame(r)) for r in assigned)
    ]
    return typed(schemas.MechanicSessions(sessions=sessions))


async def get_request(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER, Role.ADMIN)
    svc = services(request)
    found = await svc.dispatcher.requests.get(request.path_params["request_id"])
    if principal.role is not Role.ADMIN and found.customer_id != principal.sub:
        raise RequestNotFound()
    return typed(await request_view(svc, found))


async def cancel_request(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)
    cancelled = await svc.dispatcher.cancel(principal.sub, request.path_params["request_id"])
    return typed(await request_view(svc, cancelled))


async def complete_request(request: Request) -> Response:
    principal = authenticate(request, Role.MECHANIC)
    svc = services(request)
    completed = await svc.dispatcher.complete(principal.sub, request.path_params["request_id"])
    return typed(await request_view(svc, completed))


async def dismiss_favorite_prompt(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    await services(request).dispatcher.dismiss_favorite_prompt(principal.sub, request.path_params["request_id"])
    return Response(status_code=204)


routes = [
    Route("/api/session-requests", create_request, methods=["POST"]),
    Route("/api/customer/session-requests", list_own_requests),
    Route("/api/mechanic/sessions", list_own_sessions),
    Route("/api/session-requests/{request_id}", get_request),
    Route("/api/session-requests/{request_id}/cancel", cancel_request, methods=["POST"]),
    Route("/api/session-requests/{request_id}/complete", complete_request, methods=["POST"]),
    Route("/api/session-requests/{request_id}/favorite-prompt/dismiss", dismiss_favorite_prompt, methods=["POST"]),
]
