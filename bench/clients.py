"""Benchmark clients that speak our protocol, the bare peer's, or Socket.IO's wire format.

`BenchClient` sends and receives (heartbeats, bookings' acks, a control socket); `Receiver` only counts a
broadcast's arrivals, at a fraction of the cost (no task, no queue, no wakeup per frame, and no parsing while it
counts), so that a fan-out measures the servers rather than the one client process reading every socket. Every
server is driven by the same clients from one process, so client-side costs are the same for every server measured.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


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
    marker_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.marker_bytes = self.marker.encode()

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


class Receiver(asyncio.Protocol):
    """A socket that counts a broadcast's arrival, at a few microseconds a frame: while counting, it only looks for
    the marker in the bytes as they arrive and keeps them; websockets' sans-I/O protocol parses them (and answers
    pings) once counting stops. Parsing as they arrive cost the client 10-17 µs a frame, as much as the servers
    spend writing one: the client, not the server, set the pace of a fan-out."""

    def __init__(self, kind: Kind, url: str) -> None:
        self.kind = kind
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ws = ClientProtocol(parse_uri(url), max_size=None)
        self._transport: asyncio.Transport | None = None
        self._arrivals: Arrivals | None = None
        self._counted = False
        self._unparsed: list[bytes] = []

    def count(self, arrivals: Arrivals) -> None:
        """Record the first arrival of a frame holding `arrivals.marker` from now on."""
        self._arrivals, self._counted = arrivals, False

    def stop_counting(self) -> None:
        self._arrivals = None
        unparsed, self._unparsed = self._unparsed, []
        for data in unparsed:
            self._parse(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self._arrivals is None:
            self._parse(data)
            return
        if not self._counted:
            # A marker split between two reads is found too: the previous read's tail is searched with this one.
            tail = self._unparsed[-1][-len(self._arrivals.marker_bytes) :] if self._unparsed else b""
            if self._arrivals.marker_bytes in tail + data:
                self._counted = True
                self._arrivals.record()
        self._unparsed.append(data)

    def _parse(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._on_text(bytes(event.data))
            elif isinstance(event, Response) and event.status_code != 101 and not self.opened.done():
                self.opened.set_exception(ConnectionError(f"handshake refused: {event.status_code}"))
        self._flush()

    def _on_text(self, text: bytes) -> None:
        if self.opened.done():
            if self.kind is Kind.SOCKETIO and text == b"2":
                self._ws.send_text(b"3")  # engine.io ping -> pong
        elif self.kind is Kind.SOCKETIO and text.startswith(b"0"):
            self._ws.send_text(b"40")  # engine.io open: join the default namespace
        else:
            self.opened.set_result(None)  # our welcome, the bare peer's, or Socket.IO's namespace joined

    def _flush(self) -> None:
        assert self._transport is not None
        for chunk in self._ws.data_to_send():
            if chunk:
                self._transport.write(chunk)
            else:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before it opened"))

    def close(self) -> None:
        """A closing handshake's first half; the transport closes once the frame is written."""
        if self._transport is not None and not self._transport.is_closing():
            self._ws.send_close()
            self._flush()
            self._transport.close()


async def connect_receivers(kind: Kind, urls: list[str], concurrency: int = 200) -> list[Receiver]:
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one(url: str) -> Receiver:
        uri = parse_uri(url)
        async with gate:
            _, receiver = await loop.create_connection(lambda: Receiver(kind, url), uri.host, uri.port)
            await asyncio.wait_for(receiver.opened, 60)
        return receiver

    return list(await asyncio.gather(*(one(url) for url in urls)))


def close_receivers(receivers: list[Receiver]) -> None:
    for receiver in receivers:
        receiver.close()


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
