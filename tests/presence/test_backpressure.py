"""A client that stops reading never delays anyone else, and what the server holds for it stays bounded."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from api.auth import Role
from api.settings import Settings
from delivery.envelope import Envelope, encode_envelope
from dispatch.keys import DispatchKeys
from tests.helpers import Harness, start_server

FRAME_BYTES = 500_000
FRAMES = 40  # 20 MB: far more than the kernel's buffers and the transport's high-water mark


@pytest.fixture(
    params=[None, "websockets-sansio"],
    ids=["frames written as serialised", "uvicorn's own protocol, through ASGI send"],
)
async def any_protocol(request: pytest.FixtureRequest, settings: Settings, redis: Redis) -> AsyncIterator[Harness]:
    """Our protocol writes a frame serialised once; under any other, frames go through the ASGI send."""
    async with start_server(settings, ws=request.param) as harness:
        yield harness


def _blackholed_socket(harness: Harness, token: str) -> socket.socket:
    """A WebSocket handshake done by hand on a socket with a tiny receive buffer that is then never read."""
    host, port = harness.base_url.removeprefix("http://").split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /ws/mechanic HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bearer.{token}\r\n\r\n"
        ).encode()
    )
    assert raw.recv(12) == b"HTTP/1.1 101"
    return raw


async def test_a_client_that_stops_reading_is_cut_and_others_get_every_frame(
    any_protocol: Harness, redis: Redis
) -> None:
    harness = any_protocol
    stuck_id, reader_id = await harness.create_mechanic("Stuck"), await harness.create_mechanic("Reader")
    stuck = await asyncio.to_thread(_blackholed_socket, harness, harness.token(Role.MECHANIC, stuck_id))
    reader = await harness.connect(reader_id)
    frame = msgspec.json.encode({"type": "noise", "pad": "x" * FRAME_BYTES})
    channel = DispatchKeys(harness.settings.key_prefix).deliveries
    started = time.monotonic()
    for _ in range(FRAMES):
        envelope = Envelope(frame=msgspec.Raw(frame), to=(stuck_id, reader_id))
        await redis.publish(channel, encode_envelope(envelope))
    while reader.count("noise") < FRAMES:
        assert time.monotonic() - started < 10, f"the reader got {reader.count('noise')} of {FRAMES}"
        await asyncio.sleep(0.05)
    body = (await harness.http.get("/metrics", headers=harness.admin)).text
    dropped = next(line for line in body.splitlines() if line.startswith("favdispatch_slow_clients_dropped_total"))
    assert float(dropped.split(" ")[1]) >= 1
    stuck.close()
    await reader.close()
