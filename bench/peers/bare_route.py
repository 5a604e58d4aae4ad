"""The limit for the status endpoint: a bare Starlette route returning a constant JSON, on our uvicorn settings.

python -m bench.peers.bare_route PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BODY = {
    "mechanic_id": "6a0f6b0e-5b8c-4d3e-9a51-5a9d0c1e0001",
    "name": "Sam Rivera",
    "is_online": True,
    "last_seen": "2026-11-24T08:45:02.077Z",
    "last_seen_seconds": 0,
    "priority_booking": True,
}


async def status(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


app = Starlette(routes=[Route("/status", status)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )
