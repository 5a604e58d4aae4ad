"""The contracts: every endpoint module's declarations, and the route table and OpenAPI document built from them
(the one place that lists the modules; `api/app.py` serves the routes, `/openapi.json` the document), and the
socket's AsyncAPI document (`/asyncapi.json`), built from the frame types."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import (
    admin,
    asyncapi,
    favorites,
    favorites_stream,
    health,
    metrics,
    payments,
    push,
    session_requests,
    statuses,
    workshops,
)
from api.openapi import build

MODULES = (health, statuses, favorites, favorites_stream, session_requests, admin, workshops, payments, push, metrics)
OPERATIONS = tuple(op for module in MODULES for op in module.endpoint.operations)
OPENAPI = build(OPERATIONS)
ASYNCAPI = asyncapi.build(OPENAPI["info"]["version"])


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def asyncapi_document(request: Request) -> Response:
    return JSONResponse(ASYNCAPI)


FIXED_PATHS = {key: handler for module in MODULES for key, handler in module.endpoint.fixed_paths.items()}
ROUTES = [
    *(route for module in MODULES for route in module.endpoint.routes),
    Route("/openapi.json", openapi, include_in_schema=False),
    Route("/asyncapi.json", asyncapi_document, include_in_schema=False),
]
