"""How every tool ends: a server that cannot be reached or answers an error is one clear line on stderr and a
non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import httpx
from websockets.exceptions import InvalidHandshake, InvalidURI

EXIT_UNREACHABLE = 3


def run(main: Coroutine[Any, Any, int | None]) -> None:
    """Run a tool's coroutine and exit with its status (0 when it returns None)."""
    try:
        status = asyncio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
    except httpx.HTTPStatusError as error:
        response = error.response
        sys.exit(
            _fail(
                f"{response.request.method} {response.request.url} answered {response.status_code}: {_detail(response)}"
            )
        )
    except (httpx.TransportError, OSError, InvalidHandshake, InvalidURI) as error:
        sys.exit(_fail(f"could not reach the server: {error or type(error).__name__}", EXIT_UNREACHABLE))
    sys.exit(status or 0)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)[:200]


def _fail(line: str, status: int = 1) -> int:
    print(f"error: {line}", file=sys.stderr)
    return status
