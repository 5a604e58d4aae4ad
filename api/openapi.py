"""The OpenAPI document served at /openapi.json: the HTTP half of the contract (docs/protocol.md is the socket)."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "A webhook whose signature does not verify, or whose metadata cannot make a request.",
        401: "Missing, invalid or expired token.",
        403: "The token's role may not do this.",
        404: "Not found (unknown, deleted or malformed id).",
        409: "The request is in a state that does not allow this.",
        422: "Invalid body or parameters.",
        503: "Redis or the database is unreachable.",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


def _op(
    summary: str, ok: dict[str, Any], *errors: int, body: str | None = None, params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*errors)}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


_TS = {"type": ["string", "null"], "format": "date-time", "description": "ISO-8601 UTC with milliseconds"}
_ID = {"type": "string", "format": "uuid"}
_NULLABLE_ID = {"type": ["string", "null"], "format": "uuid"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "favdispatch",
        "version": "0.1.0",
        "description": "Presence and priority dispatch for booking remote sessions with favorite mechanics. "
        "Authenticate with `Authorization: Bearer <JWT>`. Mechanics connect to the WebSocket `/ws/mechanic?token=…` "
        "described in docs/protocol.md.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            },
            "MechanicStatus": {
                "type": "object",
                "properties": {
                    "mechanic_id": _ID,
                    "name": {"type": "string"},
                    "is_online": {"type": "boolean"},
                    "last_seen": _TS,
                    "last_seen_seconds": {"type": ["integer", "null"]},
                    "priority_booking": {
                        "type": ["boolean", "null"],
                        "description": "For customers: whether their bookings go to a favorite first (A/B rollout).",
                    },
                },
            },
            "Favorite": {
                "type": "object",
                "properties": {
                    "provider_id": _ID,
                    "provider_type": {"enum": ["independent", "workshop"]},
                    "name": {"type": "string"},
                    "booking_count": {"type": "integer"},
                    "created_at": _TS,
                    "is_online": {"type": "boolean"},
                    "last_seen": _TS,
                    "last_seen_seconds": {"type": ["integer", "null"]},
                },
            },
            "NewFavorite": {
                "type": "object",
                "required": ["provider_id"],
                "properties": {"provider_id": _ID, "provider_type": {"enum": ["independent", "workshop"]}},
            },
            "NewMechanic": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "provider_type": {"enum": ["independent", "workshop"]}},
            },
            "NewSessionRequest": {
                "type": "object",
                "required": ["session_type", "plan_code", "routing"],
                "properties": {
                    "session_type": {"enum": ["chat", "video", "diagnostic"]},
                    "plan_code": {"enum": ["quick", "standard", "extended"]},
                    "routing": {"enum": ["priority", "notify_and_wait", "broadcast"]},
                    "preferred_mechanic_id": _NULLABLE_ID,
                    "provider_type": {"enum": ["independent", "workshop"]},
                },
            },
            "SessionRequest": {
                "type": "object",
                "properties": {
                    "id": _ID,
                    "status": {"enum": ["pending", "accepted", "cancelled", "completed"]},
                    "phase": {"enum": ["priority", "broadcast", None]},
                    "routing": {"enum": ["priority", "notify_and_wait", "broadcast"]},
                    "routing_type": {"enum": ["priority_broadcast", "broadcast"]},
                    "session_type": {"type": "string"},
                    "plan_code": {"type": "string"},
                    "preferred_mechanic_id": _NULLABLE_ID,
                    "mechanic_id": _NULLABLE_ID,
                    "mechanic_name": {"type": ["string", "null"]},
                    "attempt": {"type": "integer"},
                    "priority_window_minutes": {"type": ["integer", "null"]},
                    "priority_deadline": _TS,
                    "priority_notified_at": _TS,
                    "fallback_broadcast_at": _TS,
                    "created_at": _TS,
                    "accepted_at": _TS,
                    "arm": {"enum": ["priority", "control"]},
                    "message": {"type": "string", "description": "The sentence the customer app shows."},
                    "favorite_prompt": {
                        "type": ["object", "null"],
                        "description": "After completion, while the mechanic is not a favorite and not dismissed.",
                        "properties": {"mechanic_id": _ID, "name": {"type": "string"}},
                    },
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {
            "get": {"summary": "The process is alive.", "security": [], "responses": {"200": {"description": "ok"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Redis and the database are reachable.",
                "security": [],
                "responses": {"200": {"description": "ready"}, **_errors(503)},
            }
        },
        "/api/mechanics/{mechanic_id}/status": {
            "get": _op(
                "A mechanic's live status (any role).",
                {"200": _json(_ref("MechanicStatus"), "status")},
                401,
                404,
                params=[_path_param("mechanic_id")],
            )
        },
        "/api/mechanics/status": {
            "get": _op(
                "Status of up to 100 mechanics: one entry per id, an error entry for unknown ones.",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"mechanics": {"type": "array", "items": _ref("MechanicStatus")}},
                        },
                        "statuses",
                    )
                },
                401,
                422,
                params=[
                    {
                        "name": "ids",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "Comma-separated mechanic ids, at most 100.",
                    }
                ],
            )
        },
        "/api/customer/favorites": {
            "get": _op(
                "The caller's favorites with live status, most booked first (customer).",
                {
                    "200": _json(
                        {"type": "object", "properties": {"favorites": {"type": "array", "items": _ref("Favorite")}}},
                        "favorites",
                    )
                },
                401,
                403,
            ),
            "post": _op(
                "Add a favorite: 201 when new, 200 when it already was one (customer).",
                {"201": _json(_ref("Favorite"), "added"), "200": _json(_ref("Favorite"), "already a favorite")},
                401,
                403,
                404,
                422,
                body="NewFavorite",
            ),
        },
        "/api/customer/favorites/{provider_id}": {
            "delete": _op(
                "Remove a favorite; idempotent (customer).",
                {"204": {"description": "removed"}},
                401,
                403,
                404,
                params=[_path_param("provider_id")],
            )
        },
        "/api/admin/mechanics": {
            "post": _op(
                "Create a mechanic (admin).",
                {"201": _json(_ref("MechanicStatus"), "created")},
                401,
                403,
                422,
                body="NewMechanic",
            )
        },
        "/api/admin/mechanics/{mechanic_id}": {
            "delete": _op(
                "Soft-delete a mechanic: sockets close 4404, favorites forget them, their requests move on (admin).",
                {"204": {"description": "deleted"}},
                401,
                403,
                404,
                params=[_path_param("mechanic_id")],
            )
        },
        "/api/session-requests": {
            "post": _op(
                "Create a session request and start routing it (customer).",
                {"201": _json(_ref("SessionRequest"), "created")},
                401,
                403,
                404,
                422,
                body="NewSessionRequest",
            )
        },
        "/api/session-requests/{request_id}": {
            "get": _op(
                "A request as its customer (or an admin) sees it; poll it.",
                {"200": _json(_ref("SessionRequest"), "the request")},
                401,
                403,
                404,
                params=[_path_param("request_id")],
            )
        },
        "/api/session-requests/{request_id}/cancel": {
            "post": _op(
                "Cancel a pending or accepted request; every offer is revoked (customer).",
                {"200": _json(_ref("SessionRequest"), "cancelled")},
                401,
                403,
                404,
                409,
                params=[_path_param("request_id")],
            )
        },
        "/api/session-requests/{request_id}/complete": {
            "post": _op(
                "The assigned mechanic ends the session (mechanic).",
                {"200": _json(_ref("SessionRequest"), "completed")},
                401,
                403,
                404,
                409,
                params=[_path_param("request_id")],
            )
        },
        "/api/session-requests/{request_id}/favorite-prompt/dismiss": {
            "post": _op(
                "Hide the 'Add to Favorites' prompt of a completed request (customer).",
                {"204": {"description": "dismissed"}},
                401,
                403,
                404,
                params=[_path_param("request_id")],
            )
        },
        "/api/checkout": {
            "post": _op(
                "Create a Stripe Checkout Session for a booking; the webhook creates the request once paid "
                "(customer; 409 payments_disabled when payments are off).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"checkout_session_id": {"type": "string"}, "url": {"type": "string"}},
                        },
                        "created",
                    )
                },
                401,
                403,
                404,
                409,
                422,
                body="NewSessionRequest",
            )
        },
        "/api/stripe/webhook": {
            "post": {
                "summary": "Stripe's webhook, verified with Stripe-Signature. Paid checkouts create exactly one "
                "request; other events are acknowledged.",
                "security": [],
                "responses": {"200": {"description": "received; body has outcome and request_id"}, **_errors(400)},
            }
        },
        "/api/admin/kpis": {
            "get": _op(
                "The favorites KPIs, split by A/B arm (admin). Definitions: docs/kpis.md.",
                {"200": {"description": "the report"}},
                401,
                403,
                422,
                params=[
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "arm", "in": "query", "schema": {"enum": ["priority", "control"]}},
                ],
            )
        },
        "/api/admin/kpis/chart.svg": {
            "get": _op(
                "A KPI over time as an SVG line chart (admin): metric time_to_accept or fallback_rate.",
                {"200": {"description": "image/svg+xml"}},
                401,
                403,
                422,
                params=[
                    {"name": "metric", "in": "query", "schema": {"enum": ["time_to_accept", "fallback_rate"]}},
                    {"name": "buckets", "in": "query", "schema": {"type": "integer", "minimum": 2, "maximum": 48}},
                    {"name": "bucket_minutes", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
            )
        },
        "/api/admin/mechanics/online": {
            "get": _op(
                "Mechanics online now, across every server (admin).", {"200": {"description": "mechanics"}}, 401, 403
            )
        },
        "/api/admin/session-requests": {
            "get": _op(
                "Pending and accepted requests, newest first (admin).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"requests": {"type": "array", "items": _ref("SessionRequest")}},
                        },
                        "open requests",
                    )
                },
                401,
                403,
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics: open from loopback, otherwise admin only.",
                "responses": {"200": {"description": "text/plain; version=0.0.4"}, **_errors(401, 403)},
            }
        },
        "/api/admin/session-requests/{request_id}/events": {
            "get": _op(
                "A request's event log (admin).",
                {"200": {"description": "events, oldest first"}},
                401,
                403,
                404,
                params=[_path_param("request_id")],
            )
        },
    },
}
