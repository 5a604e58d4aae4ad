"""Each HTTP endpoint declared once, on its handler: path, method, roles, body and response types, statuses,
query parameters and summary. The route table (`Endpoints.routes`) and the OpenAPI document (`api/openapi.py`)
are both built from these declarations, so the two cannot drift apart. The declared roles are also what lets a
caller in: each route checks the bearer token against them before its handler runs, which reads the caller
with `caller(request)`.

    endpoint = Endpoints()

    @endpoint("post", "/api/things", "Make a thing.", CUSTOMER, body=ThingBody, response=Thing, status=201)
    async def make_thing(request: Request) -> Response: ...

    routes = endpoint.routes
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Role
from api.context import authenticate

Handler = Callable[[Request], Awaitable[Response]]

ANY = ("customer", "mechanic", "admin")
CUSTOMER, MECHANIC, ADMIN = ("customer",), ("mechanic",), ("admin",)
BODY_ERRORS = (400, 413, 422)  # not JSON (bad_message), too large, of the wrong shape


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
    required_query: tuple[str, ...] = ()  # of `query`, those a request must carry
    idempotent: bool = False  # honours an Idempotency-Key header
    conditional: bool = False  # answers with an ETag, and 304 to a matching If-None-Match
    checks_its_caller: bool = False  # the handler decides who may call it (`/metrics`: loopback scrapers too)
    handler: Handler | None = None


class Endpoints:
    """One module's endpoints, in the order they are declared."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def __call__(
        self, method: str, path: str, summary: str, *roles: Any, **described: Any
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler as `method path` (`roles`: one tuple of role names, or none)."""
        who: tuple[str, ...] = roles[0] if roles else ()

        def declare(handler: Handler) -> Handler:
            self.operations.append(Operation(method, path, summary, who, handler=handler, **described))
            return handler

        return declare

    @property
    def routes(self) -> list[Route]:
        return [Route(op.path, _guarded(op), methods=[op.method.upper()]) for op in self.operations if op.handler]

    @property
    def fixed_paths(self) -> dict[tuple[str, str], Handler]:
        """The handlers of paths without parameters, by method and path: `api/app.py` serves them past the
        router, which would try each route's pattern in turn."""
        return {
            (op.method.upper(), op.path): _guarded(op) for op in self.operations if op.handler and "{" not in op.path
        }


def _guarded(operation: Operation) -> Handler:
    """The handler behind its declared roles: 401 without a valid token, 403 for another role."""
    handler = operation.handler
    assert handler is not None
    if not operation.roles or operation.checks_its_caller:
        return handler
    roles = tuple(Role(role) for role in operation.roles)

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        request.scope["principal"] = authenticate(request, *roles)
        return await handler(request)

    return guarded
