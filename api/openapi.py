"""The OpenAPI document, generated from the endpoints' declarations (`api/endpoints.py`): schemas from the msgspec
types they read and answer, paths from their methods, roles, statuses and parameters. docs/protocol.md is the
socket half."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from api import schemas
from api.endpoints import Operation

ERROR_TEXT = {
    400: "A body that is not well-formed JSON (`bad_message`: a syntax error, bytes that are not UTF-8, nesting "
    "too deep), or a webhook whose signature does not verify or whose event cannot make a request.",
    401: "Missing, invalid or expired token.",
    402: "Payments are on: book through checkout.",
    403: "The token's role may not do this.",
    404: "Not found (unknown, deleted or malformed id).",
    409: "A conflict: the request's state does not allow this, you already have an open request for this "
    "favorite (`request_already_open`, with its `request_id`).",
    413: "The body is larger than MAX_BODY_BYTES.",
    422: "Invalid body or parameters; the message names the field.",
    429: "Too many at once (`too_many_streams`: a customer's live streams).",
    502: "Stripe refused or could not be reached.",
    503: "Redis or the database is unreachable.",
}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Stripe's convention, per caller, kept 24 hours: a booking's key is stored with the booking it "
    "made, so a retry after any failure answers that booking (its current view, 201, `Idempotent-Replayed: true`) "
    "or books it if nothing was stored; a checkout's key is Stripe's own, so a retry gets the same Checkout "
    "Session. The same key with another body is 422 `idempotency_key_reused`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "The `ETag` of your copy: 304 with no body while the status it describes still holds (a weak "
    "tag: the copy's `last_seen_seconds` is as old as the copy, so count from `last_seen`).",
    "schema": {"type": "string"},
}
ETAG_HEADER = {"ETag": {"description": "A weak tag for what this answer says.", "schema": {"type": "string"}}}


def _ref(schema_type: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema_type.__name__}"}


def _operation(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if op.response is not None:
        ok["content"] = {op.media_type: {"schema": _ref(op.response)}}
    elif op.status != 204:
        ok["content"] = {op.media_type: {}}
    if op.conditional:
        ok["headers"] = ETAG_HEADER
    responses: dict[str, Any] = {str(status): ok for status in (op.status, *op.also)}
    if op.conditional:
        responses["304"] = {
            "description": "Not Modified: your copy (`If-None-Match`) still holds.",
            "headers": ETAG_HEADER,
        }
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
    parameters += [
        {"name": name, "in": "query", "required": name in op.required_query, "schema": schema}
        for name, schema in op.query.items()
    ]
    if op.idempotent:
        parameters.append(IDEMPOTENCY_KEY)
    if op.conditional:
        parameters.append(IF_NONE_MATCH)
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    return described


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def build(operations: Iterable[Operation]) -> dict[str, Any]:
    """The document for these endpoints: their paths, and the schemas of every type they read or answer."""
    operations = list(operations)
    types = {t for op in operations for t in (op.body, op.response) if t is not None} | {schemas.Error}
    _, components = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
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
