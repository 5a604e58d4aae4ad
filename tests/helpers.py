"""Test helpers: a real uvicorn server (in-process or as a subprocess), an HTTP client, and a mechanic app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api.app import create_app
from api.auth import Role, mint_token
from api.settings import Settings
from scripts.embedded_redis import free_port
from scripts.processes import PortTaken, ServerProcess, spawn_python, wait_ready
from scripts.serve import uvicorn_options
from tests.openapi_check import validate_response

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class MechanicApp:
    """A mechanic's device, as the apps behave: heartbeats at the interval the welcome gives, acks offers.

    It collects every frame; `expect` waits for the next one of a type.
    """

    ws: ClientConnection
    mechanic_id: str
    received: list[dict[str, Any]] = field(default_factory=list)
    _inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None
    auto_ack: bool = True
    auto_accept: bool = False
    heartbeats: bool = True
    _heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _beat(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.send({"type": "heartbeat"})

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                self.received.append(message)
                if message.get("type") == "welcome" and self.heartbeats:
                    self._heartbeat = asyncio.create_task(self._beat(float(message["heartbeat_interval_s"])))
                if self.auto_ack and message.get("type") == "offer":
                    await self.send({"type": "ack", "offer_id": message["offer_id"]})
                if self.auto_accept and message.get("type") == "offer":
                    await self.send({"type": "accept", "request_id": message["request_id"]})
                await self._inbox.put(message)
        except Exception:
            pass

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def expect(self, kind: str, /, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} {match} within {timeout}s; got {self.received}")
            try:
                message = await asyncio.wait_for(self._inbox.get(), remaining)
            except TimeoutError:
                continue
            if message.get("type") == kind and all(message.get(k) == v for k, v in match.items()):
                return message

    async def expect_nothing(self, kind: str, within: float, /, **match: Any) -> None:
        await asyncio.sleep(within)
        hits = [m for m in self.received if m.get("type") == kind and all(m.get(k) == v for k, v in match.items())]
        assert not hits, f"unexpected {kind}: {hits}"

    def count(self, kind: str, /, **match: Any) -> int:
        return sum(1 for m in self.received if m.get("type") == kind and all(m.get(k) == v for k, v in match.items()))

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


@dataclass
class Harness:
    settings: Settings
    base_url: str
    ws_url: str
    http: httpx.AsyncClient
    admin_token: str
    customer_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    apps: list[MechanicApp] = field(default_factory=list)

    @property
    def secret(self) -> str:
        return str(self.settings.jwt_secret)

    def token(self, role: Role, sub: str | None = None, name: str | None = None) -> str:
        return mint_token(self.secret, sub=sub or str(uuid.uuid4()), role=role, name=name)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def customer(self) -> dict[str, str]:
        return self.auth(self.token(Role.CUSTOMER, self.customer_id, "Jordan"))

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(self.admin_token)

    async def create_mechanic(self, name: str = "Sam", provider_type: str = "independent") -> str:
        response = await self.http.post(
            "/api/admin/mechanics", json={"name": name, "provider_type": provider_type}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def create_workshop(self, name: str, *members: str) -> str:
        response = await self.http.post("/api/admin/workshops", json={"name": name}, headers=self.admin)
        assert response.status_code == 201, response.text
        workshop_id = str(response.json()["id"])
        for member in members:
            added = await self.http.put(f"/api/admin/workshops/{workshop_id}/members/{member}", headers=self.admin)
            assert added.status_code == 200, added.text
        return workshop_id

    async def connect(
        self,
        mechanic_id: str,
        *,
        auto_ack: bool = True,
        auto_accept: bool = False,
        heartbeats: bool = True,
        ws_url: str | None = None,
        token_in_query: bool = False,
    ) -> MechanicApp:
        """Connect as the apps do: the token as the `bearer.<token>` subprotocol (or, for old clients, `?token=`)."""
        token = self.token(Role.MECHANIC, mechanic_id)
        if token_in_query:
            ws = await connect(f"{ws_url or self.ws_url}?token={token}", compression=None, open_timeout=5)
        else:
            ws = await connect(
                ws_url or self.ws_url, subprotocols=[Subprotocol(f"bearer.{token}")], compression=None, open_timeout=5
            )
        app = MechanicApp(
            ws=ws, mechanic_id=mechanic_id, auto_ack=auto_ack, auto_accept=auto_accept, heartbeats=heartbeats
        )
        app.start()
        await app.expect("welcome")
        self.apps.append(app)
        return app

    async def status(self, mechanic_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/mechanics/{mechanic_id}/status", headers=self.customer)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_for_status(self, mechanic_id: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            current = await self.status(mechanic_id)
            if all(current.get(k) == v for k, v in fields.items()):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"status never reached {fields}: {current}")
            await asyncio.sleep(0.05)

    async def book(self, **body: Any) -> dict[str, Any]:
        body.setdefault("session_type", "video")
        body.setdefault("plan_code", "standard")
        response = await self.http.post("/api/session-requests", json=body, headers=self.customer)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def request(self, request_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/session-requests/{request_id}", headers=self.customer)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def events(self, request_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/api/admin/session-requests/{request_id}/events", headers=self.admin)
        assert response.status_code == 200, response.text
        return list(response.json()["events"])

    async def wait_for(self, request_id: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            current = await self.request(request_id)
            if all(current.get(k) == v for k, v in fields.items()):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"request never reached {fields}: {current}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def start_server(settings: Settings, ws: str | None = None) -> AsyncIterator[Harness]:
    """A real uvicorn server in this event loop, on a free loopback port, with the production uvicorn settings
    (`ws`: another WebSocket protocol than ours)."""
    port = free_port()
    options = uvicorn_options(settings)
    options["log_level"] = "warning"
    if ws is not None:
        options["ws"] = ws
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    base_url = f"http://127.0.0.1:{port}"
    hooks = {"response": [validate_response]}
    async with httpx.AsyncClient(base_url=base_url, timeout=10, event_hooks=hooks) as http:
        harness = Harness(
            settings=settings,
            base_url=base_url,
            ws_url=f"ws://127.0.0.1:{port}/ws/mechanic",
            http=http,
            admin_token=mint_token(str(settings.jwt_secret), sub=str(uuid.uuid4()), role=Role.ADMIN),
        )
        try:
            yield harness
        finally:
            for app in harness.apps:
                await app.close()
            server.should_exit = True
            await task


def server_env(settings: Settings) -> dict[str, str]:
    """The environment a server subprocess needs to share this test's Redis, database and windows."""
    assert settings.redis_url is not None
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        REDIS_URL=settings.redis_url,
        DATABASE_URL=settings.database_url,
        REDIS_KEY_PREFIX=settings.key_prefix,
        JWT_SECRET=str(settings.jwt_secret),
        WEB_PUSH="on" if settings.web_push else "off",
        VAPID_PRIVATE_KEY=str(settings.vapid_private_key),
        VAPID_SUBJECT=settings.vapid_subject,
        WEB_PUSH_ALLOW_LOOPBACK_HTTP=str(settings.push_endpoints_may_be_loopback_http).lower(),
        PUSH_RETRY_BASE_S=str(settings.push_retry_base_s),
        HEARTBEAT_INTERVAL_S=str(settings.heartbeat_interval_s),
        PRESENCE_TTL_S=str(settings.presence_ttl_s),
        LAST_SEEN_FLUSH_S=str(settings.last_seen_flush_s),
        PRIORITY_WINDOW_S=str(settings.priority_window_s),
        NOTIFY_WAIT_WINDOW_S=str(settings.notify_wait_window_s),
        OFFER_ACK_TIMEOUT_S=str(settings.offer_ack_timeout_s),
        OFFER_RESENDS=str(settings.offer_resends),
        PUSH_TIMEOUT_S=str(settings.push_timeout_s),
        LOG_LEVEL="WARNING",
    )
    return env


async def spawn_server(settings: Settings, output: IO[bytes] | None = None, **env: str) -> ServerProcess:
    """A server in a process of its own (to run several, or to kill one with SIGKILL); `env` overrides settings,
    `output` receives its log."""
    retries = 2  # on another port, should another server have taken this one first
    while True:
        server = spawn_python(
            ["-m", "scripts.serve", "--production", "--port", "{port}"], {**server_env(settings), **env}, output
        )
        try:
            await wait_ready(server)
        except PortTaken:
            if retries == 0:
                raise
            retries -= 1
            continue
        return server


def stop_server(server: ServerProcess) -> None:
    server.stop()


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    id: str
    data: Any


class EventStream:
    """A Server-Sent Events response read as `EventSource` reads one: events dispatched with their type, data and
    id; the last id seen (`last_event_id`, which an id-only message updates too); comments counted."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.last_event_id = ""
        self.comments = 0
        self.ended = asyncio.Event()
        self._events: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        kind, data = "message", []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        self._events.put_nowait(ServerSentEvent(kind, self.last_event_id, json.loads("\n".join(data))))
                    kind, data = "message", []
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        self.last_event_id = value
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    async def next(self, timeout: float = 5.0) -> ServerSentEvent:
        return await asyncio.wait_for(self._events.get(), timeout)

    async def until(self, kind: str, timeout: float = 5.0, **match: Any) -> ServerSentEvent:
        """The next event of this type whose data has these fields (others before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.0, deadline - time.monotonic()))
            if event.event == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event

    async def nothing_within(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            event = await self.next(seconds)
            raise AssertionError(f"unexpected event {event}")

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.response.aclose()


@asynccontextmanager
async def favorites_stream(
    http: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[EventStream]:
    """`GET /api/customer/favorites/stream`, open (asserted 200) for the block's length."""
    request = http.build_request("GET", "/api/customer/favorites/stream", headers=headers, params=params)
    response = await http.send(request, stream=True)
    assert response.status_code == 200, (await response.aread()).decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = EventStream(response)
    try:
        yield stream
    finally:
        await stream.close()
