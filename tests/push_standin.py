"""A local stand-in for a browser vendor's push service (they cannot be reached from here), checking what they check.

Each push must carry a VAPID token (RFC 8292) signed by the server's key, for this service's origin, expiring
within 24 hours, with a `mailto:`/`https:` subject; a `TTL`, an `Urgency` and at most a 32-character `Topic`
(RFC 8030); and an `aes128gcm` body (RFC 8291) that the device's own private key and auth secret decrypt. What
fails a check is answered as a push service would (400/401/403) and kept in `refused`. A test may script the
answers a device gets (`answers`) to play 410 Gone or 500, or make a device's push service accept the
connection and never answer (`hanging`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scripts.embedded_redis import free_port

URGENCIES = {"very-low", "low", "normal", "high"}
TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """A browser's side of a subscription: the keys it generated, which the server encrypts for."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: uuid.uuid4().bytes)

    def subscription(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives the app to post."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"p256dh": b64url(public), "auth": b64url(self.auth)}
        return {"endpoint": self.endpoint, "expirationTime": None, "keys": keys}


@dataclass(frozen=True)
class Received:
    device: str
    payload: dict[str, Any]
    ttl: int
    urgency: str
    topic: str | None


@dataclass
class PushStandIn:
    vapid_public_key: str  # the server's: every token must verify against it
    base_url: str = ""
    devices: dict[str, Device] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)  # device id -> statuses to answer, in order
    attempts: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    hanging: set[str] = field(default_factory=set)  # device ids whose push service never answers
    first_attempt_at: dict[str, float] = field(default_factory=dict)  # device id -> loop time

    def device(self) -> tuple[str, Device]:
        device_id = uuid.uuid4().hex
        self.devices[device_id] = Device(f"{self.base_url}/push/{device_id}")
        return device_id, self.devices[device_id]

    def _refuse(self, status: int, why: str) -> Response:
        self.refused.append(why)
        return Response(why, status_code=status)

    async def _push(self, request: Request) -> Response:
        device_id = request.path_params["device"]
        device = self.devices.get(device_id)
        if device is None:
            return Response(status_code=404)
        self.attempts[device_id] = self.attempts.get(device_id, 0) + 1
        self.first_attempt_at.setdefault(device_id, asyncio.get_running_loop().time())
        if device_id in self.hanging:
            await asyncio.Event().wait()  # cancelled when the stand-in stops
        scheme, _, params = request.headers.get("authorization", "").partition(" ")
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        if scheme.lower() != "vapid" or "t" not in fields or "k" not in fields:
            return self._refuse(401, f"no VAPID authorization: {request.headers.get('authorization')!r}")
        if fields["k"] != self.vapid_public_key:
            return self._refuse(403, "signed with another key than the subscription's applicationServerKey")
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
        try:
            claims = jwt.decode(fields["t"], key=public_key, algorithms=["ES256"], audience=self.base_url)
        except jwt.InvalidTokenError as invalid:
            return self._refuse(403, f"VAPID token: {invalid}")
        if claims["exp"] > time.time() + 24 * 3600:
            return self._refuse(403, "VAPID token expires more than 24 hours ahead")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return self._refuse(403, f"VAPID subject {claims.get('sub')!r} is not a mailto: or https: URL")
        ttl = request.headers.get("ttl", "")
        urgency = request.headers.get("urgency", "normal")
        topic = request.headers.get("topic")
        if not ttl.isdigit():
            return self._refuse(400, f"TTL header missing or not a number: {ttl!r}")
        if urgency not in URGENCIES:
            return self._refuse(400, f"Urgency {urgency!r}")
        if topic is not None and not TOPIC.fullmatch(topic):
            return self._refuse(400, f"Topic {topic!r} is not 1-32 base64url characters")
        if request.headers.get("content-encoding") != "aes128gcm":
            return self._refuse(415, f"Content-Encoding {request.headers.get('content-encoding')!r}")
        try:
            plain = http_ece.decrypt(
                await request.body(), private_key=device.private_key, auth_secret=device.auth, version="aes128gcm"
            )
        except Exception as undecryptable:
            return self._refuse(400, f"the body does not decrypt with the device's keys: {undecryptable!r}")
        scripted = self.answers.get(device_id)
        status = scripted.pop(0) if scripted else 201
        if status < 300:
            self.received.append(Received(device_id, json.loads(plain), int(ttl), urgency, topic))
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/push/{device}", self._push, methods=["POST"])])


@asynccontextmanager
async def push_standin(vapid_public_key: str) -> AsyncIterator[PushStandIn]:
    standin = PushStandIn(vapid_public_key)
    port = free_port()
    config = uvicorn.Config(
        standin.app(), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    standin.base_url = f"http://127.0.0.1:{port}"
    try:
        yield standin
    finally:
        server.should_exit = True
        await task
