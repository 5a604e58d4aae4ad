"""What every handler needs from a request: the process's services, the caller, and a parsed booking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from api.auth import Principal, Role, decode_token
from api.responses import Forbidden, optional_text, required_text
from dispatch.booking import NewRequest

if TYPE_CHECKING:
    from api.app import Services


def services(connection: HTTPConnection) -> Services:
    return connection.state.services  # type: ignore[no-any-return]


def authenticate(connection: HTTPConnection, *roles: Role) -> Principal:
    """The caller of `Authorization: Bearer <JWT>`; InvalidToken (401) or Forbidden (403) otherwise."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = decode_token(
        token if scheme.lower() == "bearer" else None, str(services(connection).settings.jwt_secret)
    )
    if roles and principal.role not in roles:
        raise Forbidden(f"This needs the {' or '.join(r.value for r in roles)} role.")
    return principal


def new_request_from(principal: Principal, body: dict[str, Any]) -> NewRequest:
    """The booking body shared by `POST /api/session-requests` and `POST /api/checkout`."""
    return NewRequest(
        customer_id=principal.sub,
        customer_name=principal.name,
        session_type=required_text(body, "session_type", 20),
        plan_code=required_text(body, "plan_code", 20),
        routing=optional_text(body, "routing", 20) or "broadcast",
        preferred_mechanic_id=optional_text(body, "preferred_mechanic_id", 64),
        provider_type=optional_text(body, "provider_type", 20),
    )
