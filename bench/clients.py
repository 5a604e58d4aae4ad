"""Benchmark clients: one raw WebSocket client that speaks our protocol, the bare peer's, or Socket.IO's wire format.

All three are driven the same way from one process, so client-side costs are the same for every server measured.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Kind(StrEnum):
    OURS = "ours"
    BARE = "bare"
    SOCKETIO = "socketio"


@dataclass
class Arrivals:
    """Arrival times of the broadcast under measurement, one per client."""

    expected: int
    marker: str = '"offer"'  # what a frame under measurement contains
    times: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) >= self.expected:
            self.done.set()


@dataclass
class BenchClient:
    kind: Kind
    url: str
    ws: ClientConnection | None = None
    acks: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    arrivals: Arrivals | None = None
    reader: asyncio.Task[None] | None = None
    acks_offers: bool = False  # as the apps do; only where it matters (bookings), as it costs the client time

    async def connect(self) -> None:
        self.ws = await connect(self.url, compression=None, open_timeout=60, max_queue=None, ping_interval=None)
        if self.kind is Kind.SOCKETIO:
            await self.ws.recv()  # engine.io open packet
            await self.ws.send("40")
            await self.ws.recv()  # namespace connected
        else:
            await self.ws.recv()  # welcome
        self.reader = asyncio.create_task(self._read())

    def heartbeat_frame(self) -> str:
        return '42["heartbeat"]' if self.kind is Kind.SOCKETIO else '{"type":"heartbeat"}'

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                text = frame if isinstance(frame, str) else frame.decode()
                if self.kind is Kind.SOCKETIO:
                    if text == "2":
                        await self.ws.send("3")  # engine.io ping -> pong
                    elif text.startswith('42["heartbeat_ack"'):
                        self.acks.put_nowait(None)
                    elif text.startswith('42["offer"') and self.arrivals is not None:
                        self.arrivals.record()
                elif '"heartbeat_ack"' in text:
                    self.acks.put_nowait(None)
                else:
                    if self.arrivals is not None and self.arrivals.marker in text:
                        self.arrivals.record()
                    if self.acks_offers and text.startswith('{"type":"offer"'):
                        # As the apps do: an unacked priority offer is resent, then falls back.
                        offer_id = json.loads(text)["offer_id"]
                        await self.ws.send(json.dumps({"type": "ack", "offer_id": offer_id}))
        except ConnectionClosed:
            return

    async def heartbeat_round_trip(self) -> None:
        assert self.ws is not None
        await self.ws.send(self.heartbeat_frame())
        await self.acks.get()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()


async def connect_many(kind: Kind, urls: list[str], concurrency: int = 200) -> list[BenchClient]:
    gate = asyncio.Semaphore(concurrency)
    clients = [BenchClient(kind, url) for url in urls]

    async def one(client: BenchClient) -> None:
        async with gate:
            await client.connect()

    await asyncio.gather(*(one(c) for c in clients))
    return clients


async def close_many(clients: list[BenchClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def broadcast_trigger(kind: Kind, frame: str) -> str:
    """What a control client sends to make the bare peer or the Socket.IO peer broadcast `frame`."""
    if kind is Kind.SOCKETIO:
        return "42" + json.dumps(["broadcast", json.loads(frame)])
    return json.dumps({"type": "broadcast", "frame": frame})
