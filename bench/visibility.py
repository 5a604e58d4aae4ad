"""How soon a presence transition on one process is visible to status reads on another.

A mechanic's app connects to process A while a lean client polls process B's status endpoint on a keep-alive
connection (each poll pre-built, about a tenth of a millisecond apart): the clock runs from the welcome frame (A
marks the mechanic online before sending it) until B first answers online, and from the moment the app starts
closing until B first answers offline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from websockets.asyncio.client import connect

from base.stats import percentile

GIVE_UP_S = 5.0


async def transitions(socket_urls: Sequence[str], status_port: int, status_paths: Sequence[str], token: str) -> dict:
    """p50/p99/max milliseconds until B sees each mechanic come online and go offline (one trial per mechanic)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", status_port)
    online_ms: list[float] = []
    offline_ms: list[float] = []

    async def seen(request: bytes, online: bool, since: float) -> float:
        while time.perf_counter() - since < GIVE_UP_S:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            body = await reader.readexactly(length)
            if (b'"is_online":true' in body) is online:
                return (time.perf_counter() - since) * 1000
        raise TimeoutError("the transition never became visible")

    for url, path in zip(socket_urls, status_paths, strict=True):
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        # Unbounded: greeted with every open offer earlier phases left (more than the default queue of 16), a
        # client that stops reading would never see the server's answer to its close, and wait out its timeout.
        app = await connect(url, compression=None, ping_interval=None, max_queue=None)
        await app.recv()  # welcome: A has marked the mechanic online
        online_ms.append(await seen(request, True, time.perf_counter()))
        closing = time.perf_counter()
        await app.close()
        offline_ms.append(await seen(request, False, closing))
    writer.close()
    return {
        "trials": len(online_ms),
        "online": _summary(online_ms),
        "offline": _summary(offline_ms),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5) or 0.0, 2),
        "p99_ms": round(percentile(values, 0.99) or 0.0, 2),
        "max_ms": round(max(values), 2),
    }
