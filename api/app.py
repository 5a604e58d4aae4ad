"""The app factory: the route table, the error handlers and the lifespan, put together."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from api.contract import FIXED_PATHS, ROUTES
from api.favorites_stream import STREAM_PATH, serve_stream
from api.responses import exception_handlers, serve_directly
from api.runtime import lifespan_for
from api.settings import Settings, load_settings
from api.socket import MechanicSocket
from api.statuses import POLL_PATH, poll

log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
# `token=` however its letters are percent-encoded (`%74oken=` is `token=` to the server's query parser), and
# anything shaped like a JWT wherever it appears.
_TOKEN_IN_QUERY = re.compile(r"((?:t|%74)(?:o|%6f)(?:k|%6b)(?:e|%65)(?:n|%6e)(?:=|%3d))[^&\s\"]+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    # Most lines (every status poll's) carry neither a query value nor a JWT: two substring tests, no regex.
    if "=" not in text and "eyJ" not in text:
        return text
    return _JWT.sub("[redacted]", _TOKEN_IN_QUERY.sub(r"\1[redacted]", text))


class RedactTokens(logging.Filter):
    """Access, connection and error log lines never print a token: one passed as `?token=` (its key percent-encoded
    or not), or anything shaped like a JWT."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                redact(a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


SOCKET_PATH = "/ws/mechanic"


class App(Starlette):
    """Starlette, with the hottest endpoints handed straight to their handlers: the mechanics' socket and the
    customers' favorites stream (each lives for hours, and each layer above the endpoint, the error middleware and
    the router, would keep a coroutine frame per connection) and the status poll (those layers cost as much as its
    answer). Every other endpoint of a path without parameters (a booking among them) is found by its method and
    path and served past the middleware too; the router serves the rest (and answers 404 and 405). A middleware
    added here would see none of these."""

    def __init__(self, socket: Callable[..., Awaitable[None]], **options: Any) -> None:
        super().__init__(**options)
        self._socket = socket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and (polled := POLL_PATH.fullmatch(scope["path"])):
            await poll(scope, receive, send, polled[1])
        elif scope["type"] == "websocket" and scope["path"] == SOCKET_PATH:
            await self._socket(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == STREAM_PATH:
            await serve_stream(scope, receive, send)
        elif scope["type"] == "http" and (handler := FIXED_PATHS.get((scope["method"], scope["path"]))):
            scope["app"] = self  # as Starlette sets it (the 405 answer reads the routes from it)
            await serve_directly(handler, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> App:
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    if settings.jwt_secret_is_generated:
        log.warning("JWT_SECRET is not set: using a generated development secret (var/dev_jwt_secret)")
    if settings.web_push and settings.vapid_is_generated:
        log.warning("VAPID_PRIVATE_KEY is not set: Web Push signs with a development key (var/dev_vapid_private_key)")
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL is not set: start the server with `make run` (which provides one) or set it")
    return App(
        MechanicSocket(),
        routes=[
            *ROUTES,
            Mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console"),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan_for(settings),
    )
