"""The limit: a bare `websockets` server doing only the transport (same compression and frame limit as ours).

Replies `{"type":"heartbeat_ack"}` to a heartbeat; a `{"type":"broadcast","frame":…}` message is sent to every
connection with `websockets.broadcast`.

    python -m bench.peers.bare_ws PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

CONNECTIONS: set[ServerConnection] = set()
ACK = '{"type":"heartbeat_ack"}'


async def handler(ws: ServerConnection) -> None:
    CONNECTIONS.add(ws)
    try:
        await ws.send('{"type":"welcome"}')
        async for frame in ws:
            message = json.loads(frame)
            if message.get("type") == "heartbeat":
                await ws.send(ACK)
            elif message.get("type") == "broadcast":
                broadcast(CONNECTIONS, message["frame"])
    finally:
        CONNECTIONS.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=64 * 1024):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
