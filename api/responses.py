"""Every HTTP error is `{"error": code, "message": text}` with the right status, and never a 500 for bad input.

Bodies are read up to `MAX_BODY_BYTES` (refused with 413 before more is read) and decoded straight into their
`msgspec` type, which validates them: a wrong type, a missing field or a string too long is a 422 naming the field.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from base.decoding import decode
from base.errors import BodyTooLarge, Conflict, FavdispatchError, InternalError, InvalidInput, InvalidToken
from delivery.uvicorn_protocols import send_whole

log = logging.getLogger(__name__)

T = TypeVar("T")


_encode = msgspec.json.Encoder().encode


def typed(body: msgspec.Struct, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A response whose body is one of `api/schemas.py`'s types, encoded by msgspec in one call."""
    return Response(_encode(body), status_code=status_code, headers=headers, media_type="application/json")


class JSONAnswer(Response):
    """A JSON body (or none, for a 304) with its head built here in one list: Starlette's `Response.__init__`
    builds a header dict, a list and encodes each value per call, which cost a status poll as much as its tag."""

    def __init__(self, status_code: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        if status_code == 304:  # no body, and no length or type of one (RFC 9110 §15.4.5)
            self.raw_headers = extra
        else:
            self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json"), *extra]


def error(status: int, code: str, message: str, request_id: str | None = None) -> JSONResponse:
    body = {"error": code, "message": message}
    if request_id is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes; read once per request (an
    Idempotency-Key fingerprints it before the handler decodes it)."""
    kept: bytes | None = getattr(request.state, "body", None)
    if kept is not None:
        return kept
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The body may be at most {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The body may be at most {limit} bytes.")
        chunks.append(chunk)
    body = request.state.body = b"".join(chunks)
    return body


async def read_json(request: Request, body_type: type[T]) -> T:
    """Read and validate a JSON body as `body_type`."""
    data = await read_body(request, request.state.services.settings.max_body_bytes)
    try:
        return decode(data, body_type)
    except msgspec.ValidationError as invalid:
        raise InvalidInput(str(invalid)) from None


async def _known_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FavdispatchError)
    response = error(exc.status, exc.code, exc.message, exc.request_id if isinstance(exc, Conflict) else None)
    if isinstance(exc, InvalidToken):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    response = error(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (each method of a path may be a route of its own, and
    Starlette's own `Allow` names only the first route that matched the path)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "OPTIONS"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(InternalError.status, InternalError.code, InternalError.default_message)


async def error_response(request: Request, exc: Exception) -> Response:
    """What the exception handlers answer, for an endpoint served outside Starlette's middleware."""
    if isinstance(exc, FavdispatchError):
        return await _known_error(request, exc)
    if isinstance(exc, HTTPException):
        return await _http_exception(request, exc)
    return await _unexpected(request, exc)


async def serve_directly(
    handler: Callable[[Request], Awaitable[Response]], scope: Scope, receive: Receive, send: Send
) -> None:
    """An endpoint served past Starlette's middleware and router, its errors answered as the handlers answer
    them: on a booking those layers and their send wrappers cost 6 to 10% of the server's CPU (py-spy), and they
    add nothing here."""
    request = Request(scope, receive)
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 (what ServerErrorMiddleware would do: a JSON 500, logged)
        response = await error_response(request, exc)
    await send_response(response, scope, receive, send)


async def send_response(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """A response of a head and one body written to the socket at once (`send_whole`): Starlette sends the two
    as two messages, which uvicorn writes apart, two sends to the kernel where one does (a poll's server time
    fell by a tenth). One that streams, or has work to run after it, is sent as Starlette sends it."""
    if type(response).__call__ is not Response.__call__ or response.background is not None:
        await response(scope, receive, send)
        return
    await send_whole(send, response.status_code, response.raw_headers, response.body)


exception_handlers: dict[Any, Any] = {
    FavdispatchError: _known_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
