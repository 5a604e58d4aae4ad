"""Offer latency: from the moment a booking is sent until its priority offer is on the favorite's socket.

The client is lean so that it costs next to nothing while timed: one raw keep-alive TCP connection per booking,
opened and warmed before the clock starts, and each request's bytes built beforehand. The server's CPU time over
the burst, divided by the bookings, gives CPU milliseconds per booking.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import sqlalchemy as sa
from databases import Database

from base.stats import percentile
from bench.clients import Arrivals, BenchClient

BARE_TABLE = sa.text(
    "CREATE TABLE IF NOT EXISTS bare_bookings "
    "(id VARCHAR(36) PRIMARY KEY, customer_id VARCHAR(36) NOT NULL, mechanic_id VARCHAR(36) NOT NULL, "
    "created_at TIMESTAMP WITH TIME ZONE NOT NULL)"
)


@dataclass(frozen=True)
class Booking:
    """One booking's request bytes, and the socket its offer must reach."""

    request: bytes
    favorite: BenchClient


def http_post(path: str, headers: dict[str, str], body: object) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def burst(
    port: int, bookings: list[Booking], warm_path: str, cpu_seconds: Callable[[], float]
) -> dict[str, float]:
    """Send every booking at once on pre-opened connections; latency per booking and the server's CPU cost."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in bookings]
    warm = f"GET {warm_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for reader, writer in connections:
        writer.write(warm)
        await read_response(reader)
    for booking in bookings:
        booking.favorite.arrivals = Arrivals(expected=1, marker='"kind":"priority"')
    sent = [0.0] * len(bookings)
    statuses: list[int] = []

    async def book(n: int) -> None:
        reader, writer = connections[n]
        sent[n] = time.perf_counter()
        writer.write(bookings[n].request)
        statuses.append(await read_response(reader))

    cpu_before = cpu_seconds()
    await asyncio.gather(*(book(n) for n in range(len(bookings))))
    failed = [s for s in statuses if s >= 300]
    if failed:
        raise RuntimeError(f"{len(failed)} bookings failed, e.g. HTTP {failed[0]}")
    offers = [b.favorite.arrivals.done.wait() for b in bookings if b.favorite.arrivals]
    await asyncio.wait_for(asyncio.gather(*offers), 60)
    cpu_used = cpu_seconds() - cpu_before
    for _, writer in connections:
        writer.close()
    latencies = [(b.favorite.arrivals.times[0] - sent[n]) * 1000 for n, b in enumerate(bookings) if b.favorite.arrivals]
    for booking in bookings:
        booking.favorite.arrivals = None
    return {
        "bookings": len(bookings),
        "p50_ms": round(percentile(latencies, 0.5) or 0.0, 1),
        "p99_ms": round(percentile(latencies, 0.99) or 0.0, 1),
        "cpu_ms_per_booking": round(cpu_used * 1000 / len(bookings), 2),
    }


async def create_bare_table(database_url: str) -> None:
    database = Database(database_url)
    await database.connect()
    await database.execute(BARE_TABLE)
    await database.disconnect()


@asynccontextmanager
async def postgres_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """A PostgreSQL database of the benchmark's own, dropped afterwards."""
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def reachable(admin_url: str) -> str | None:
    """None when PostgreSQL answers at `admin_url`, else why not."""
    try:
        connection = await asyncpg.connect(admin_url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    await connection.close()
    return None
