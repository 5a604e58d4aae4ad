"""The peer: the same presence-and-broadcast job built the way a Python team would otherwise build it,
python-socketio with its Redis manager on uvicorn.

Each connection sets a presence key with a TTL; each `heartbeat` event refreshes it and answers
`heartbeat_ack`; a `broadcast` event emits `offer` to everyone through the Redis manager (so several processes
share the fan-out, as ours do).

    python -m bench.peers.socketio_peer PORT REDIS_URL
"""

from __future__ import annotations

import sys
from typing import Any

import socketio
import uvicorn
from redis.asyncio import BlockingConnectionPool, Redis

PORT, REDIS_URL = int(sys.argv[1]), sys.argv[2]
TTL_S = 30

manager = socketio.AsyncRedisManager(REDIS_URL)
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])
redis = Redis(connection_pool=BlockingConnectionPool.from_url(REDIS_URL, max_connections=64, timeout=10))
app = socketio.ASGIApp(sio)


@sio.event  # type: ignore[misc]
async def connect(sid: str, environ: dict[str, Any]) -> None:
    await redis.set(f"peer:online:{sid}", 1, ex=TTL_S)


@sio.event  # type: ignore[misc]
async def heartbeat(sid: str, data: Any = None) -> None:
    await redis.set(f"peer:online:{sid}", 1, ex=TTL_S)
    await sio.emit("heartbeat_ack", to=sid)


@sio.event  # type: ignore[misc]
async def broadcast(sid: str, data: Any) -> None:
    await sio.emit("offer", data)


@sio.event  # type: ignore[misc]
async def disconnect(sid: str, *args: Any) -> None:
    await redis.delete(f"peer:online:{sid}")


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=PORT, log_level="warning", ws="websockets-sansio", ws_per_message_deflate=False
    )
