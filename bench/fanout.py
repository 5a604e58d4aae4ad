"""Fan-out and idle memory: one broadcast to every socket, favdispatch beside the bare server, taking turns."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bench.booking_latency import (
    http_post,
    read_response,
)
from bench.clients import (
    Arrivals,
    Kind,
    Receiver,
    broadcast_trigger,
    close_many,
    close_receivers,
    connect_many,
    connect_receivers,
)
from bench.collector import settle_garbage
from bench.servers import Ours, Server, bare_urls, pct, running, servers_idle, spawn

OFFER_FRAME = json.dumps(
    {
        "type": "offer",
        "offer_id": "x.2.broadcast",
        "request_id": "x",
        "kind": "broadcast",
        "customer_name": "Jordan",
        "session_type": "video",
        "expires_at": None,
        "attempt": 2,
    }
)


# 1. Idle memory


async def idle_memory(server: Server, kind: Kind, urls: list[str]) -> dict[str, float]:
    warm = await connect_many(kind, urls[:10])
    await close_many(warm)
    await asyncio.sleep(1)
    before = server.rss
    clients = await connect_many(kind, urls)
    await asyncio.sleep(2)
    after = server.rss
    await close_many(clients)
    return {
        "connections": len(urls),
        "rss_delta_mib": round((after - before) / 2**20, 1),
        "per_connection_kib": round((after - before) / len(urls) / 1024, 2),
    }


# 2. Fan-out


FAN_OUT_ROUNDS = 11


@dataclass
class Fanning:
    """One server side of a fan-out: its processes, the receivers on their sockets, and what makes it broadcast."""

    servers: list[Server]
    clients: list[Receiver]
    trigger: Callable[[], Awaitable[None]]


async def fan_out(*sides: Fanning) -> list[list[tuple[float, float]]]:
    """Each side's (deliveries/s, p99 ms) per round: FAN_OUT_ROUNDS after one warm-up round (a server's first
    broadcast fills its caches and compiles its statements, as the bookings phase's warm-up burst does).

    The sides take turns, one round each, so that every round of one has a round of the others beside it in time:
    this machine's speed swings between two levels about 40% apart, for seconds to minutes at a time, and a side
    measured alone would carry whichever level it met. Each round starts once the servers are idle: a server still
    digesting the sockets that just connected (or those an earlier phase closed) would have that backlog counted
    as its fan-out."""
    rounds: list[list[tuple[float, float]]] = [[] for _ in sides]
    settle_garbage()
    for _ in range(1 + FAN_OUT_ROUNDS):
        for side, found in zip(sides, rounds, strict=True):
            found.append(await fan_out_round(side))
    return [found[1:] for found in rounds]


async def fan_out_round(side: Fanning) -> tuple[float, float]:
    await servers_idle(*side.servers)
    arrivals = Arrivals(expected=len(side.clients))
    for client in side.clients:
        client.count(arrivals)
    started = time.perf_counter()
    await side.trigger()
    await asyncio.wait_for(arrivals.done.wait(), 60)
    for client in side.clients:
        client.stop_counting()
    delays = [t - started for t in arrivals.times]
    return len(delays) / max(delays), pct(delays, 0.99) * 1000


def summary(rounds: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "deliveries_per_s": round(statistics.median(rate for rate, _ in rounds)),
        "p99_ms": round(statistics.median(p99 for _, p99 in rounds), 1),
    }


@asynccontextmanager
async def fanning_ours(ours: Ours, servers: list[Server], n: int) -> AsyncIterator[Fanning]:
    """`n` sockets spread over our `servers`, each broadcast triggered by a booking sent to the first: built before
    the clock starts, on a connection opened before it."""
    clients = await connect_receivers(Kind.OURS, ours.urls(servers, n))
    body = {"session_type": "chat", "plan_code": "quick", "routing": "broadcast"}
    bookings = iter([http_post("/api/session-requests", ours.customer(), body) for _ in range(1 + FAN_OUT_ROUNDS)])
    reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)

    async def book() -> None:
        writer.write(next(bookings))
        if (status := await read_response(reader)) != 201:
            raise RuntimeError(f"the broadcast booking was refused: {status}")

    try:
        yield Fanning(servers, clients, book)
    finally:
        writer.close()
        close_receivers(clients)
        # Stopped while still releasing these sockets, a server would leave their devices online for the
        # benchmark's hour-long presence TTL, and a later phase would find those mechanics online.
        await servers_idle(*servers)


@asynccontextmanager
async def fanning_peer(server: Server, kind: Kind, urls: list[str]) -> AsyncIterator[Fanning]:
    """The bare server or the Socket.IO peer: each broadcast triggered by a control socket of its own."""
    clients = await connect_receivers(kind, urls)
    (control,) = await connect_many(kind, urls[:1])
    frame = broadcast_trigger(kind, OFFER_FRAME)

    async def trigger() -> None:
        assert control.ws is not None
        await control.ws.send(frame)

    try:
        yield Fanning([server], clients, trigger)
    finally:
        close_receivers(clients)
        await control.close()


async def fan_out_alone(ours: Ours, servers: list[Server], n: int) -> dict[str, float]:
    async with fanning_ours(ours, servers, n) as side:
        (rounds,) = await fan_out(side)
    return summary(rounds)


async def fan_out_beside_bare(ours: Ours, server: Server, bare: Server, n: int) -> dict[str, dict[str, float]]:
    """Our one process and the bare server taking turns; the verdict is the median of each of our rounds' ratio
    to the bare round beside it."""
    async with fanning_ours(ours, [server], n) as our_side, fanning_peer(bare, Kind.BARE, bare_urls(bare, n)) as peer:
        our_rounds, bare_rounds = await fan_out(our_side, peer)
    ratios = [o / b for (o, _), (b, _) in zip(our_rounds, bare_rounds, strict=True)]
    paired = round(statistics.median(ratios), 3)
    return {"ours": {**summary(our_rounds), "paired_ratio": paired}, "bare": summary(bare_rounds)}


async def fan_out_phase(ours: Ours, n: int) -> dict[str, Any]:
    """Fan-out alone: favdispatch on one process beside the bare server, then favdispatch on two processes."""
    server, bare = ours.start(), spawn(["-m", "bench.peers.bare_ws", "{port}"])
    async with running(server, bare):
        fan = await fan_out_beside_bare(ours, server, bare, n)
    first, second = ours.start(), ours.start()
    async with running(first, second):
        fan["ours_two_processes"] = await fan_out_alone(ours, [first, second], n)
    return fan
