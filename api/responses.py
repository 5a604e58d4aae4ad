"""Every HTTP error is `{"error": code, "message": text}` with the right status, and never a 500 for bad input."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth import InvalidToken
from dispatch.errors import DomainError, InternalError, InvalidInput

log = logging.getLogger(__name__)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


class Forbidden(Exception):
    """A valid token whose role may not do this."""


async def read_json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    return body


def optional_text(body: dict[str, Any], name: str, max_length: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(f"{name} must be a string of at most {max_length} characters.")
    return value


def required_text(body: dict[str, Any], name: str, max_length: int = 200) -> str:
    value = optional_text(body, name, max_length)
    if not value:
        raise InvalidInput(f"{name} is required.")
    return value


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error(exc.status, exc.code, exc.message)


async def _invalid_token(request: Request, exc: Exception) -> Response:
    response = error(401, "unauthorized", str(exc))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _forbidden(request: Request, exc: Exception) -> Response:
    return error(403, "forbidden", str(exc) or "Your role may not do this.")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(InternalError.status, InternalError.code, InternalError.default_message)


exception_handlers: dict[Any, Any] = {
    DomainError: _domain_error,
    InvalidToken: _invalid_token,
    Forbidden: _forbidden,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
