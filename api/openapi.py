"""The OpenAPI document served at /openapi.json, generated: schemas from the msgspec types in `api/schemas.py`,
paths from the small route description below (status codes and roles). docs/protocol.md is the socket half."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from api import schemas

ERROR_TEXT = {
    400: "A webhook whose signature does not verify, or whose event cannot make a request.",
    401: "Missing, invalid or expired token.",
    402: "Payments are on: book through checkout.",
    403: "The token's role may not do this.",
    404: "Not found (unknown, deleted or malformed id).",
    409: "A conflict: the request's state does not allow this, you already have an open request for this "
    "favorite (`request_already_open`, with its `request_id`), or an Idempotency-Key is in use.",
    413: "The body is larger than MAX_BODY_BYTES.",
    422: "Invalid body or parameters; the message names the field.",
    502: "Stripe refused or could not be reached.",
    503: "Redis or the database is unreachable.",
}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Stripe's convention: the same key and body within 24 hours answer the first result (with "
    "`Idempotent-Replayed: true`); the same key with another body is 422 `idempotency_key_reused`; a key whose "
    "first request is still running is 409 `idempotency_key_in_use`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    roles: tuple[str, ...] = ()  # empty: no token needed
    body: type | None = None
    response: type | None = None
    status: int = 200
    also: tuple[int, ...] = ()  # further success statuses with the same response
    media_type: str = "application/json"
    errors: tuple[int, ...] = ()
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotent: bool = False  # honours an Idempotency-Key header


ANY = ("customer", "mechanic", "admin")
CUSTOMER, MECHANIC, ADMIN = ("customer",), ("mechanic",), ("admin",)
BODY_ERRORS = (413, 422)

OPERATIONS = (
    Operation("get", "/healthz", "Liveness: the process answers.", response=schemas.Health),
    Operation(
        "get",
        "/readyz",
        "Readiness: Redis and the database answer (503 names which does not).",
        response=schemas.Readiness,
        also=(503,),
    ),
    Operation(
        "get",
        "/api/mechanics/{mechanic_id}/status",
        "Online now, or offline and last seen when (from memory: no Redis or database round trip).",
        ANY,
        response=schemas.MechanicStatus,
        errors=(401, 404),
    ),
    Operation(
        "get",
        "/api/mechanics/status",
        "The status of up to 100 mechanics at once (`ids`, comma-separated); unknown ids get an error entry.",
        ANY,
        response=schemas.StatusBatch,
        errors=(401, 422),
        query={"ids": {"type": "string"}},
    ),
    Operation(
        "get",
        "/api/workshops/{workshop_id}/status",
        "A workshop's status: online while any member is, `last_seen` the latest of its members' (from memory).",
        ANY,
        response=schemas.WorkshopStatus,
        errors=(401, 404),
    ),
    Operation(
        "get",
        "/api/customer/favorites",
        "Your favorite mechanics and workshops with their live status.",
        CUSTOMER,
        response=schemas.Favorites,
        errors=(401, 403),
    ),
    Operation(
        "post",
        "/api/customer/favorites",
        "Save a mechanic (`provider_type` independent) or a workshop as a favorite (201 when new, 200 when "
        "already saved).",
        CUSTOMER,
        body=schemas.FavoriteBody,
        response=schemas.FavoriteAdded,
        status=201,
        also=(200,),
        errors=(401, 403, 404, *BODY_ERRORS),
    ),
    Operation(
        "delete",
        "/api/customer/favorites/{provider_id}",
        "Remove a favorite.",
        CUSTOMER,
        status=204,
        errors=(401, 403, 404),
    ),
    Operation(
        "post",
        "/api/admin/mechanics",
        "Create a mechanic.",
        ADMIN,
        body=schemas.MechanicBody,
        response=schemas.MechanicCreated,
        status=201,
        errors=(401, 403, *BODY_ERRORS),
    ),
    Operation(
        "delete",
        "/api/admin/mechanics/{mechanic_id}",
        "Delete a mechanic: sockets close 4404, favorites forget them, their requests move on.",
        ADMIN,
        status=204,
        errors=(401, 403, 404),
    ),
    Operation(
        "post",
        "/api/admin/workshops",
        "Create a workshop: a team a customer can favorite, any member of which may take its bookings.",
        ADMIN,
        body=schemas.WorkshopBody,
        response=schemas.Workshop,
        status=201,
        errors=(401, 403, *BODY_ERRORS),
    ),
    Operation(
        "get",
        "/api/admin/workshops",
        "Every workshop with its members and who of them is online.",
        ADMIN,
        response=schemas.Workshops,
        errors=(401, 403),
    ),
    Operation(
        "delete",
        "/api/admin/workshops/{workshop_id}",
        "Delete a workshop: its members become independent, favorites forget it, its priority requests fall back.",
        ADMIN,
        status=204,
        errors=(401, 403, 404),
    ),
    Operation(
        "put",
        "/api/admin/workshops/{workshop_id}/members/{mechanic_id}",
        "Add a mechanic to a workshop (idempotent; 409 when they belong to another workshop).",
        ADMIN,
        response=schemas.Workshop,
        errors=(401, 403, 404, 409),
    ),
    Operation(
        "delete",
        "/api/admin/workshops/{workshop_id}/members/{mechanic_id}",
        "Remove a mechanic from a workshop (idempotent); a workshop left empty is a favorite gone.",
        ADMIN,
        response=schemas.Workshop,
        errors=(401, 403, 404),
    ),
    Operation(
        "get",
        "/api/admin/mechanics/online",
        "Mechanics online now, across every server.",
        ADMIN,
        response=schemas.OnlineMechanics,
        errors=(401, 403),
    ),
    Operation(
        "get",
        "/api/admin/session-requests",
        "Pending and accepted requests, newest first.",
        ADMIN,
        response=schemas.SessionRequests,
        errors=(401, 403),
    ),
    Operation(
        "get",
        "/api/admin/session-requests/{request_id}/events",
        "A request's event log, oldest first.",
        ADMIN,
        response=schemas.Events,
        errors=(401, 403, 404),
    ),
    Operation(
        "get",
        "/api/admin/kpis",
        "The favorites KPIs, split by A/B arm (definitions: docs/kpis.md).",
        ADMIN,
        response=schemas.KpiReport,
        errors=(401, 403, 422),
        query={
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "arm": {"enum": ["priority", "control"]},
        },
    ),
    Operation(
        "get",
        "/api/admin/kpis/chart.svg",
        "A KPI over time as an SVG line chart: metric time_to_accept or fallback_rate.",
        ADMIN,
        media_type="image/svg+xml",
        errors=(401, 403, 422),
        query={
            "metric": {"enum": ["time_to_accept", "fallback_rate"]},
            "buckets": {"type": "integer", "minimum": 2, "maximum": 48},
            "bucket_minutes": {"type": "integer", "minimum": 1},
        },
    ),
    Operation(
        "post",
        "/api/session-requests",
        "Book: to a favorite first (`priority`, `notify_and_wait`) or to everyone (`broadcast`).",
        CUSTOMER,
        body=schemas.BookingBody,
        response=schemas.SessionRequest,
        status=201,
        errors=(401, 402, 403, 404, 409, *BODY_ERRORS),
        idempotent=True,
    ),
    Operation(
        "get",
        "/api/customer/session-requests",
        "Your requests, newest first: `open` (pending or accepted, the default) or `recent` (any status).",
        CUSTOMER,
        response=schemas.SessionRequests,
        errors=(401, 403, 422),
        query={"status": {"enum": ["open", "recent"]}},
    ),
    Operation(
        "get",
        "/api/mechanic/sessions",
        "Your accepted sessions not yet completed, oldest first (the socket greets with the same).",
        MECHANIC,
        response=schemas.MechanicSessions,
        errors=(401, 403),
    ),
    Operation(
        "get",
        "/api/session-requests/{request_id}",
        "One of your requests (admins: any).",
        ("customer", "admin"),
        response=schemas.SessionRequest,
        errors=(401, 403, 404),
    ),
    Operation(
        "post",
        "/api/session-requests/{request_id}/cancel",
        "Cancel your request.",
        CUSTOMER,
        response=schemas.SessionRequest,
        errors=(401, 403, 404, 409),
    ),
    Operation(
        "post",
        "/api/session-requests/{request_id}/complete",
        "End a session assigned to you.",
        MECHANIC,
        response=schemas.SessionRequest,
        errors=(401, 403, 404, 409),
    ),
    Operation(
        "post",
        "/api/session-requests/{request_id}/favorite-prompt/dismiss",
        "Dismiss the favorites prompt.",
        CUSTOMER,
        status=204,
        errors=(401, 403, 404),
    ),
    Operation(
        "get",
        "/api/push/vapid-public-key",
        "The key browsers subscribe to Web Push with (`applicationServerKey`), and whether push is on.",
        response=schemas.VapidPublicKey,
    ),
    Operation(
        "post",
        "/api/mechanic/push-subscriptions",
        "Register this device for Web Push (a browser's PushSubscription JSON; https endpoints only). 201 when "
        "new, 200 when the endpoint was already registered.",
        MECHANIC,
        body=schemas.PushSubscriptionBody,
        response=schemas.PushSubscriptionSaved,
        status=201,
        also=(200,),
        errors=(401, 403, 409, *BODY_ERRORS),
    ),
    Operation(
        "delete",
        "/api/mechanic/push-subscriptions",
        "Stop Web Push to this device (idempotent).",
        MECHANIC,
        body=schemas.PushEndpoint,
        status=204,
        errors=(401, 403, *BODY_ERRORS),
    ),
    Operation(
        "post",
        "/api/checkout",
        "Start a Stripe Checkout for a booking; the routing choice rides in its metadata.",
        CUSTOMER,
        body=schemas.BookingBody,
        response=schemas.CheckoutCreated,
        errors=(401, 403, 404, 409, *BODY_ERRORS, 502),
        idempotent=True,
    ),
    Operation(
        "post",
        "/api/stripe/webhook",
        "Stripe's webhook (signed with STRIPE_WEBHOOK_SECRET): a paid checkout creates its request once.",
        response=schemas.WebhookReceived,
        errors=(400, 409, 413),
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics (admin; loopback too where METRICS_OPEN_TO_LOOPBACK).",
        ADMIN,
        media_type="text/plain",
        errors=(401, 403),
    ),
)

_TYPES = sorted(
    {t for op in OPERATIONS for t in (op.body, op.response) if t is not None} | {schemas.Error},
    key=lambda t: t.__name__,
)


def _ref(schema_type: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema_type.__name__}"}


def _operation(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if op.response is not None:
        ok["content"] = {op.media_type: {"schema": _ref(op.response)}}
    elif op.status != 204:
        ok["content"] = {op.media_type: {}}
    responses: dict[str, Any] = {str(status): ok for status in (op.status, *op.also)}
    for status in op.errors:
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": _ref(schemas.Error)}},
        }
    described: dict[str, Any] = {
        "summary": op.summary,
        "responses": responses,
        "security": [{"bearer": []}] if op.roles else [],
        "x-roles": list(op.roles),
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        for name in _path_params(op.path)
    ]
    parameters += [{"name": name, "in": "query", "schema": schema} for name, schema in op.query.items()]
    if op.idempotent:
        parameters.append(IDEMPOTENCY_KEY)
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    return described


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def build() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_TYPES, ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "favdispatch",
            "version": "0.1.0",
            "description": "Presence and priority dispatch for booking remote sessions with favorite mechanics. "
            "Authenticate with `Authorization: Bearer <JWT>`. Mechanics connect to the WebSocket `/ws/mechanic` "
            "(token as the `bearer.<token>` subprotocol) described in docs/protocol.md.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": components,
        },
        "paths": paths,
    }


OPENAPI = build()
