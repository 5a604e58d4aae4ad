"""What every handler needs from a request: the process's services, the caller, and a parsed booking."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from api.auth import Principal, Role
from api.runtime import Services
from api.schemas import BookingBody
from base.errors import Forbidden, InvalidInput
from dispatch.booking import NewRequest
from dispatch.mechanics import ProviderType


def services(connection: HTTPConnection) -> Services:
    """The lifespan's state, read from the scope: `connection.state` builds a `State` object per request."""
    return connection.scope["state"]["services"]  # type: ignore[no-any-return]


def authenticate(connection: HTTPConnection, *roles: Role) -> Principal:
    """The caller of `Authorization: Bearer <JWT>`; InvalidToken (401) or Forbidden (403) otherwise."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = services(connection).tokens.verify(token if scheme.lower() == "bearer" else None)
    if roles and principal.role not in roles:
        raise Forbidden(f"This needs the {' or '.join(r.value for r in roles)} role.")
    return principal


def caller(connection: HTTPConnection) -> Principal:
    """Who is calling: set by the route from the roles its endpoint declares (`api/endpoints.py`)."""
    return connection.scope["principal"]  # type: ignore[no-any-return]


def new_request_from(principal: Principal, body: BookingBody) -> NewRequest:
    """The booking shared by `POST /api/session-requests` and `POST /api/checkout`."""
    return NewRequest(
        customer_id=principal.sub,
        customer_name=principal.name,
        session_type=body.session_type,
        plan_code=body.plan_code,
        routing=body.routing,
        preferred_mechanic_id=body.preferred_mechanic_id,
        preferred_workshop_id=body.preferred_workshop_id,
        provider_type=body.provider_type,
    )


def provider_type_of(value: str | None) -> ProviderType:
    try:
        return ProviderType(value or ProviderType.INDEPENDENT.value)
    except ValueError:
        raise InvalidInput("provider_type must be independent or workshop.") from None
