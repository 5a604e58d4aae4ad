"""One client process of the capacity phase: thousands of mechanics' apps on one loopback source address, each
heartbeating every interval (with jitter) as the apps do, driven by the phase over stdin/stdout (a JSON line each).

python -m bench.capacity_client WS_URL SOURCE_ADDRESS TOKENS_FILE HEARTBEAT_INTERVAL_S

Commands: `{"cmd": "connect", "total": n}` connects mechanics until n of this process's are open; `{"cmd":
"measure", "seconds": s}` answers the heartbeat → ack times (ms) of the next s seconds; `{"cmd": "arrivals",
"request_id": id, "seconds": s}` answers when an offer for that request reached each socket (wall time), waiting
at most s for every socket; `{"cmd": "quit"}`.

Each socket is a websockets sans-I/O protocol on the transport's callback: no task per socket, and only frames
other than `heartbeat_ack` are parsed as JSON, so that one process holds 15,000 sockets without setting the pace.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from bench.collector import settle_garbage, uncollected

HEARTBEAT = b'{"type":"heartbeat"}'
HEARTBEAT_ACK = b'{"type":"heartbeat_ack"}'
CONNECTING_AT_ONCE = 100


class Mechanic(asyncio.Protocol):
    def __init__(self, url: str, phase: Phase) -> None:
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ws = ClientProtocol(parse_uri(url), max_size=None)
        self._phase = phase
        self._transport: asyncio.Transport | None = None
        self._beat_sent_at: float | None = None
        self._beat_due = 0.0  # the loop time the next heartbeat is scheduled for

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._on_text(bytes(event.data))
        self._flush()

    def _on_text(self, text: bytes) -> None:
        if text == HEARTBEAT_ACK:
            if self._beat_sent_at is not None:
                self._phase.heard_ack(time.perf_counter() - self._beat_sent_at)
                self._beat_sent_at = None
            return
        frame = json.loads(text)
        if frame.get("type") == "welcome" and not self.opened.done():
            self.opened.set_result(None)
            self._schedule_beat(random.uniform(0, self._phase.interval_s))
        elif frame.get("type") == "offer":
            self._phase.offered(frame["request_id"], time.time())

    def _schedule_beat(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._beat_due = loop.time() + delay_s
        loop.call_later(delay_s, self._beat)

    def _beat(self) -> None:
        if self._transport is None or self._transport.is_closing() or self._ws.state is not State.OPEN:
            return  # closed, or closing (the server's close frame came first): its loss is counted on close
        self._phase.beat_fired_late(asyncio.get_running_loop().time() - self._beat_due)
        self._beat_sent_at = time.perf_counter()
        self._ws.send_text(HEARTBEAT)
        self._flush()
        self._schedule_beat(self._phase.interval_s * (1 + random.uniform(-0.1, 0.1)))

    def _flush(self) -> None:
        assert self._transport is not None
        for chunk in self._ws.data_to_send():
            if chunk:
                self._transport.write(chunk)
            else:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase.lost += 1
        # Who ended it: the server's close code, or none when the connection ended without a close frame.
        self._phase.lost_by_close_code[str(self._ws.close_rcvd.code) if self._ws.close_rcvd else "none"] += 1
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the welcome"))


class Phase:
    def __init__(self, url: str, source: str, tokens: list[str], interval_s: float) -> None:
        self.url, self.source, self.tokens, self.interval_s = url, source, tokens, interval_s
        self.open: list[Mechanic] = []
        self.lost = 0
        self.lost_by_close_code: Counter[str] = Counter()
        self._acks: list[float] | None = None
        # How late this process's own heartbeat timers fire: a client too busy to send on time would otherwise
        # look like a server that lets presence lapse.
        self.latest_beat_s = 0.0
        self._arrivals: dict[str, list[float]] = {}

    def heard_ack(self, seconds: float) -> None:
        if self._acks is not None:
            self._acks.append(round(seconds * 1000, 3))

    def beat_fired_late(self, seconds: float) -> None:
        self.latest_beat_s = max(self.latest_beat_s, seconds)

    def offered(self, request_id: str, at: float) -> None:
        self._arrivals.setdefault(request_id, []).append(at)

    async def connect(self, total: int) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
        uri = parse_uri(self.url)
        failed = 0

        async def one(token: str) -> None:
            nonlocal failed
            async with gate:
                try:
                    _, mechanic = await loop.create_connection(
                        lambda: Mechanic(f"{self.url}?token={token}", self),
                        uri.host,
                        uri.port,
                        local_addr=(self.source, 0),
                    )
                    await asyncio.wait_for(mechanic.opened, 60)
                    self.open.append(mechanic)
                except (OSError, TimeoutError, ConnectionError):
                    failed += 1

        started = time.perf_counter()
        wanted = self.tokens[len(self.open) : total]
        await asyncio.gather(*(one(token) for token in wanted))
        # The sockets live as long as the run: frozen, no full collection of this process traverses them again. A
        # pass over 12,000 sockets' objects stopped this client for up to 1.8 s (timed with `gc.callbacks`), and
        # the acks and offers that arrived meanwhile were counted as the server's latency.
        settle_garbage()
        return {"open": len(self.open), "failed": failed, "lost": self.lost, "seconds": time.perf_counter() - started}

    async def measure(self, seconds: float) -> dict[str, object]:
        self._acks = []
        with uncollected():
            await asyncio.sleep(seconds)
        acks, self._acks = self._acks, None
        return {
            "acks_ms": acks,
            "lost": self.lost,
            "lost_by_close_code": self.lost_by_close_code,
            "latest_beat_s": self.latest_beat_s,
        }

    async def arrivals(self, request_id: str, seconds: float) -> dict[str, object]:
        deadline = time.monotonic() + seconds
        with uncollected():
            while len(self._arrivals.get(request_id, [])) < len(self.open) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        times = self._arrivals.pop(request_id, [])
        return {"arrived": len(times), "open": len(self.open), "last": max(times, default=None)}


async def main(url: str, source: str, tokens: list[str], interval_s: float) -> None:
    phase = Phase(url, source, tokens, interval_s)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "connect":
            answer = await phase.connect(command["total"])
        elif command["cmd"] == "measure":
            answer = await phase.measure(command["seconds"])
        elif command["cmd"] == "arrivals":
            answer = await phase.arrivals(command["request_id"], command["seconds"])
        else:
            return
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    import uvloop  # uvicorn[standard]'s: the client's loop costs less per socket

    uvloop.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]).read_text().split(), float(sys.argv[4])))
