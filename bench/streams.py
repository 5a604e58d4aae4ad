"""The customers' favorites stream under load: how soon a transition reaches a stream, what an idle stream costs,
and whether thousands of open streams slow the status poll.

One server process. Customers (ten streams each, the most a customer may hold) favorite one of `WATCHED`
mechanics; a lean client opens every stream on a raw connection and reads what arrives. Then:
- memory: the server's RSS before and after the streams opened (each once its snapshot arrived), per stream, beside
  the same for a mechanic socket (one per watched mechanic, as the memory phase opens them);
- the status poll (`wrk`, as the status phase runs it): alone; while the watched mechanics' apps connect and
  disconnect at `rate` transitions a second, no stream open; and the same with every stream open (each transition
  reaching the ten streams that watch that mechanic): the last two differ by what the streams cost;
- latency: then, transitions still going, a probe customer's stream favorites one more mechanic, whose app
  connects and closes `trials` times: the clock runs from the welcome frame (the server marked them online before
  sending it), and from the moment the app starts closing, until the probe stream's event says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from api.auth import Role, mint_token
from base.stats import percentile
from bench.clients import Kind
from bench.collector import settle_garbage, uncollected
from bench.fanout import idle_memory
from bench.phases import http_load
from bench.servers import Ours, Server, running

STREAMS_PER_CUSTOMER = 10
WATCHED = 1000  # mechanics favorited, one customer's ten streams each: a transition reaches ten streams
CHURN_LANES = 10
STREAM_PATH = "/api/customer/favorites/stream"
GIVE_UP_S = 10.0
SETTLE_S = 3.0


def _customer(ours: Ours) -> tuple[str, dict[str, str]]:
    customer_id = str(uuid.uuid4())
    return customer_id, {"Authorization": f"Bearer {mint_token(ours.secret, sub=customer_id, role=Role.CUSTOMER)}"}


async def _favorite_all(server: Server, customers: list[dict[str, str]], mechanic_ids: list[str]) -> None:
    """Customer i favorites mechanic i mod len(mechanic_ids)."""
    limit = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as http:

        async def add(i: int, headers: dict[str, str]) -> None:
            async with limit:
                body = {"provider_id": mechanic_ids[i % len(mechanic_ids)], "provider_type": "independent"}
                response = await http.post("/api/customer/favorites", json=body, headers=headers)
                response.raise_for_status()

        await asyncio.gather(*(add(i, headers) for i, headers in enumerate(customers)))


class RawStream:
    """One stream on its own connection, read to the end: bytes counted, events parsed only when asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parse: bool, received: int) -> None:
        self.reader, self.writer = reader, writer
        self.received = received
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] | None = asyncio.Queue() if parse else None
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, headers: dict[str, str], parse: bool = False) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"the stream was refused: {status!r}")
        await reader.readuntil(b"\r\n\r\n")
        # Open once the snapshot arrived: the server answers the headers first, then reads the favorites.
        first = await reader.readuntil(b"event: snapshot")
        return cls(reader, writer, parse, len(first))

    async def _read(self) -> None:
        pending = b""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while chunk := await self.reader.read(65536):
                self.received += len(chunk)
                if self.events is None:
                    continue
                arrived = time.perf_counter()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.startswith(b"data: {") and b'"provider_id"' in line and b'"favorites"' not in line:
                        self.events.put_nowait((arrived, json.loads(line[6:])))

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def _churn(ours: Ours, server: Server, mechanic_ids: list[str], rate: int, stop: asyncio.Event) -> int:
    """Connect and close the watched mechanics' apps in turn, `rate` transitions a second in all (in CHURN_LANES
    lanes, so that one slow handshake does not hold the rest back); how many were made."""
    url_of = dict(zip(ours.mechanic_ids, ours.urls([server], len(ours.mechanic_ids)), strict=True))

    async def lane(ids: list[str]) -> int:
        connected: dict[str, ClientConnection] = {}
        made, turn, started = 0, 0, time.perf_counter()
        while not stop.is_set():
            mechanic_id = ids[turn % len(ids)]
            turn += 1
            app = connected.pop(mechanic_id, None)
            if app is None:
                app = await connect(url_of[mechanic_id], compression=None, ping_interval=None, max_queue=None)
                await app.recv()  # welcome
                connected[mechanic_id] = app
            else:
                await app.close()
            made += 1
            ahead = started + made / (rate / CHURN_LANES) - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        for app in connected.values():
            await app.close()
        return made

    return sum(await asyncio.gather(*(lane(mechanic_ids[i::CHURN_LANES]) for i in range(CHURN_LANES))))


async def _probe(ours: Ours, server: Server, mechanic_id: str, probe: RawStream, trials: int) -> dict[str, Any]:
    url = ours.urls([server], len(ours.mechanic_ids))[ours.mechanic_ids.index(mechanic_id)]
    online_ms: list[float] = []
    offline_ms: list[float] = []
    assert probe.events is not None

    async def seen(online: bool, since: float) -> float:
        deadline = time.perf_counter() + GIVE_UP_S
        while True:
            arrived, event = await asyncio.wait_for(probe.events.get(), max(0.01, deadline - time.perf_counter()))
            if event.get("provider_id") == mechanic_id and event.get("is_online") is online:
                return (arrived - since) * 1000

    for _ in range(trials):
        app = await connect(url, compression=None, ping_interval=None, max_queue=None)
        await app.recv()  # welcome: the server marked the mechanic online before sending it
        online_ms.append(await seen(True, time.perf_counter()))
        closing = time.perf_counter()
        await app.close()
        offline_ms.append(await seen(False, closing))
    return {"trials": trials, "online": _summary(online_ms), "offline": _summary(offline_ms)}


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5) or 0.0, 2),
        "p99_ms": round(percentile(values, 0.99) or 0.0, 2),
        "max_ms": round(max(values), 2),
    }


async def streams_phase(ours: Ours, streams: int, seconds: float, rate: int = 100, trials: int = 200) -> dict[str, Any]:
    """The figures above; `ours` needs WATCHED + 2 mechanics."""
    watched, probed = ours.mechanic_ids[:WATCHED], ours.mechanic_ids[WATCHED]
    polled = ours.mechanic_ids[WATCHED + 1]
    server = ours.start()
    async with running(server):
        customers = [_customer(ours)[1] for _ in range(max(1, streams // STREAMS_PER_CUSTOMER))]
        _, probe_customer = _customer(ours)
        await _favorite_all(server, customers, watched)
        await _favorite_all(server, [probe_customer], [probed])
        status_url = f"http://127.0.0.1:{server.port}/api/mechanics/{polled}/status"
        poll_headers = _customer(ours)[1]
        quiet = await asyncio.to_thread(http_load, status_url, poll_headers, seconds)
        stop = asyncio.Event()
        churn = asyncio.create_task(_churn(ours, server, watched, rate, stop))
        await asyncio.sleep(1)
        churn_only = await asyncio.to_thread(http_load, status_url, poll_headers, seconds)
        stop.set()
        await churn

        sockets = await idle_memory(server, Kind.OURS, ours.urls([server], len(watched)))
        warm = [await RawStream.open(server.port, customers[0]) for _ in range(3)]
        for stream in warm:
            await stream.close()
        await asyncio.sleep(1)
        before = server.rss
        opened: list[RawStream] = []
        started = time.perf_counter()
        for start in range(0, streams, 200):
            batch = range(start, min(streams, start + 200))
            opened += await asyncio.gather(
                *(RawStream.open(server.port, customers[i // STREAMS_PER_CUSTOMER]) for i in batch)
            )
        open_s = time.perf_counter() - started
        await asyncio.sleep(2)
        after = server.rss
        probe = await RawStream.open(server.port, probe_customer, parse=True)

        stop = asyncio.Event()
        churn_started = time.perf_counter()
        churn = asyncio.create_task(_churn(ours, server, watched, rate, stop))
        await asyncio.sleep(1)
        received_before = sum(s.received for s in opened)
        loaded = await asyncio.to_thread(http_load, status_url, poll_headers, seconds)
        await asyncio.sleep(SETTLE_S)  # the load generator's connections closed and its backlog answered
        settle_garbage()  # this process holds every stream: its full collections took 200-360 ms here
        with uncollected():
            latency = await _probe(ours, server, probed, probe, trials)
        stop.set()
        transitions = await churn
        churned_s = time.perf_counter() - churn_started
        received = sum(s.received for s in opened) - received_before
        for stream in [*opened, probe]:
            await stream.close()
    return {
        "streams": len(opened),
        "opened_in_s": round(open_s, 1),
        "per_stream_kib": round((after - before) / len(opened) / 1024, 2),
        "per_socket_kib": sockets["per_connection_kib"],
        "transitions": transitions,
        "transitions_per_s": round(transitions / churned_s),
        "streams_per_transition": len(opened) // len(watched),
        "stream_mib_received_while_loaded": round(received / 2**20, 1),
        "visible_on_stream": latency,
        "status_quiet": quiet,
        "status_with_transitions": churn_only,
        "status_with_transitions_and_streams": loaded,
    }
