"""Session requests: book, read, cancel, complete, and the favorites prompt after a session."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.auth import Role
from api.context import caller, new_request_from, services
from api.endpoints import BODY_ERRORS, CUSTOMER, MECHANIC, Endpoints
from api.idempotency import REPLAYED, idempotency_key
from api.responses import read_json, typed
from api.schemas import BookingBody
from base.errors import InvalidInput, PaymentRequired

endpoint = Endpoints()


@endpoint(
    "post",
    "/api/session-requests",
    "Book: to a favorite first (`priority`, `notify_and_wait`) or to everyone (`broadcast`).",
    CUSTOMER,
    body=schemas.BookingBody,
    response=schemas.SessionRequest,
    status=201,
    errors=(401, 402, 403, 404, 409, *BODY_ERRORS),
    idempotent=True,
)
async def create_request(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    key = await idempotency_key(request, principal.sub, svc.settings.max_body_bytes)
    if key is not None and (booked := await svc.dispatcher.booked_with(key)) is not None:
        return typed(await svc.views.request(booked), status_code=201, headers=REPLAYED)
    body = await read_json(request, BookingBody)
    if svc.settings.payments_enabled:
        raise PaymentRequired()
    try:
        created = await svc.dispatcher.book(new_request_from(principal, body), key)
    except Exception:
        # A retry racing its own first try: whichever stored the key first made the booking, answer with it.
        if key is not None and (booked := await svc.dispatcher.booked_with(key)) is not None:
            return typed(await svc.views.request(booked), status_code=201, headers=REPLAYED)
        raise
    return typed(await svc.views.request(created), status_code=201)


@endpoint(
    "get",
    "/api/customer/session-requests",
    "Your requests, newest first: `open` (pending or accepted, the default) or `recent` (any status).",
    CUSTOMER,
    response=schemas.SessionRequests,
    errors=(401, 403, 422),
    query={"status": {"enum": ["open", "recent"]}},
)
async def list_own_requests(request: Request) -> Response:
    """The customer's open requests (pending or accepted) or their most recent ones, newest first: what a
    reloaded console shows as "Your request"."""
    principal = caller(request)
    which = request.query_params.get("status", "open")
    if which not in ("open", "recent"):
        raise InvalidInput("status must be one of: open, recent.")
    return typed(await services(request).views.customer_requests(principal.sub, open_only=which == "open"))


@endpoint(
    "get",
    "/api/mechanic/sessions",
    "Your accepted sessions not yet completed, oldest first (the socket greets with the same).",
    MECHANIC,
    response=schemas.MechanicSessions,
    errors=(401, 403),
)
async def list_own_sessions(request: Request) -> Response:
    """The mechanic's accepted sessions not yet completed, oldest first (the socket greets with the same)."""
    principal = caller(request)
    return typed(await services(request).views.mechanic_sessions(principal.sub))


@endpoint(
    "get",
    "/api/session-requests/{request_id}",
    "One of your requests (admins: any).",
    ("customer", "admin"),
    response=schemas.SessionRequest,
    errors=(401, 403, 404),
)
async def get_request(request: Request) -> Response:
    principal = caller(request)
    customer_id = None if principal.role is Role.ADMIN else principal.sub
    return typed(await services(request).views.request_for(request.path_params["request_id"], customer_id))


@endpoint(
    "post",
    "/api/session-requests/{request_id}/cancel",
    "Cancel your request.",
    CUSTOMER,
    response=schemas.SessionRequest,
    errors=(401, 403, 404, 409),
)
async def cancel_request(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    cancelled = await svc.dispatcher.cancel(principal.sub, request.path_params["request_id"])
    return typed(await svc.views.request(cancelled))


@endpoint(
    "post",
    "/api/session-requests/{request_id}/complete",
    "End a session assigned to you.",
    MECHANIC,
    response=schemas.SessionRequest,
    errors=(401, 403, 404, 409),
)
async def complete_request(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    completed = await svc.dispatcher.complete(principal.sub, request.path_params["request_id"])
    return typed(await svc.views.request(completed))


@endpoint(
    "post",
    "/api/session-requests/{request_id}/favorite-prompt/dismiss",
    "Dismiss the favorites prompt.",
    CUSTOMER,
    status=204,
    errors=(401, 403, 404),
)
async def dismiss_favorite_prompt(request: Request) -> Response:
    principal = caller(request)
    await services(request).dispatcher.dismiss_favorite_prompt(principal.sub, request.path_params["request_id"])
    return Response(status_code=204)
