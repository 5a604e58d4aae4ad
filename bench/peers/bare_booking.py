"""The limit for a booking: verify the JWT, one `INSERT … RETURNING`, one Redis `PUBLISH` heard by a subscriber
that writes the offer to the favorite's socket. Same libraries and uvicorn settings as favdispatch, none of its
rules: no routing, no window, no event log, no exactly-once.

    python -m bench.peers.bare_booking PORT DATABASE_URL REDIS_URL JWT_SECRET

The database must have the `bare_bookings` table (`bench.booking_latency` creates it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import jwt
import uvicorn
from databases import Database
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CHANNEL = "bare-booking-offers"
SOCKETS: dict[str, WebSocket] = {}
INSERT = (
    "INSERT INTO bare_bookings (id, customer_id, mechanic_id, created_at) "
    "VALUES (:id, :customer_id, :mechanic_id, :created_at) RETURNING id"
)

port, database_url, redis_url, secret = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


async def keep_session(connection: object) -> None:
    """asyncpg's pool reset, skipped as favdispatch skips it: no session state to reset, one round trip saved."""


database = Database(database_url, **({"reset": keep_session} if database_url.startswith("postgres") else {}))
redis = Redis.from_url(redis_url)


async def book(request: Request) -> JSONResponse:
    claims = jwt.decode(request.headers["authorization"].removeprefix("Bearer "), secret, algorithms=["HS256"])
    body = await request.json()
    mechanic_id = body["preferred_mechanic_id"]
    row = await database.fetch_one(
        INSERT,
        {
            "id": str(uuid.uuid4()),
            "customer_id": claims["sub"],
            "mechanic_id": mechanic_id,
            "created_at": datetime.now(UTC),
        },
    )
    assert row is not None
    booking_id = str(row[0])
    offer = {"type": "offer", "kind": "priority", "request_id": booking_id}
    await redis.publish(CHANNEL, json.dumps({"to": mechanic_id, "frame": json.dumps(offer, separators=(",", ":"))}))
    return JSONResponse({"id": booking_id, "status": "pending"}, status_code=201)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def mechanic_socket(websocket: WebSocket) -> None:
    mechanic_id = websocket.path_params["mechanic_id"]
    await websocket.accept()
    SOCKETS[mechanic_id] = websocket
    try:
        await websocket.send_text('{"type":"welcome"}')
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        SOCKETS.pop(mechanic_id, None)


async def deliver() -> None:
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            envelope = json.loads(message["data"])
            socket = SOCKETS.get(envelope["to"])
            if socket is not None:
                await socket.send_text(envelope["frame"])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await database.connect()
    subscriber = asyncio.create_task(deliver())
    yield
    subscriber.cancel()
    await database.disconnect()


app = Starlette(
    routes=[
        Route("/healthz", health),
        Route("/book", book, methods=["POST"]),
        WebSocketRoute("/ws/{mechanic_id}", mechanic_socket),
    ],
    lifespan=lifespan,
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )
