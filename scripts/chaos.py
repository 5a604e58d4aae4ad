"""Kill the server at random moments while bookings are in flight, and check that nothing was lost or doubled.

    python -m scripts.chaos [--rounds 20] [--bookings 4] [--mechanics 4] [--window-s 1]
                            [--database-url postgresql://…] [--redis-url redis://…] [--seed 1]

Each round books a few requests (to a favorite first, or to everyone), SIGKILLs the one server process at a random
moment of the priority window, and restarts it; the mechanics' apps reconnect as real apps do, acking and
accepting every offer. At the end every booking must be accepted exactly once, its event log must say
`accepted` exactly once, and its winner must have been told (`accepted` when it won, or `assigned` when it
reconnected). Exits non-zero, naming each booking that broke a rule. With no URLs it runs on a private Redis and
a throw-away SQLite file. Traffic stays on loopback.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from api.auth import Role, mint_token
from api.database import migrate
from scripts import cli
from scripts.embedded_redis import EmbeddedRedis

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    env: dict[str, str]
    port: int = field(default_factory=_free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.serve",
            "--production",
            "--port",
            str(self.port),
            cwd=PROJECT_ROOT,
            env=self.env,
        )
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                if self.process.returncode is not None:
                    raise RuntimeError(f"the server exited with {self.process.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


@dataclass
class App:
    """A mechanic's app: reconnects with backoff, acks and accepts every offer, remembers what it was told."""

    mechanic_id: str
    token: str
    ws_url: str
    told: set[str] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            beating: asyncio.Task[None] | None = None
            try:
                subprotocols = [Subprotocol(f"bearer.{self.token}")]
                async with connect(self.ws_url, subprotocols=subprotocols, open_timeout=2) as ws:
                    async for raw in ws:
                        message = json.loads(raw)
                        kind = message.get("type")
                        if kind == "offer":
                            await ws.send(json.dumps({"type": "ack", "offer_id": message["offer_id"]}))
                            await ws.send(json.dumps({"type": "accept", "request_id": message["request_id"]}))
                        elif kind in ("accepted", "assigned"):
                            self.told.add(message["request_id"])
                        elif kind == "welcome":
                            heartbeat = float(message["heartbeat_interval_s"])
                            beating = asyncio.create_task(_beat(ws, heartbeat))
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.2)
            finally:
                if beating is not None:
                    beating.cancel()


async def _beat(ws: object, interval_s: float) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(interval_s)
            await ws.send('{"type":"heartbeat"}')  # type: ignore[attr-defined]


@contextlib.contextmanager
def _backing(database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(EmbeddedRedis()).url
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="favdispatch-chaos-"))
            database_url = f"sqlite:///{folder}/chaos.db"
        yield database_url, redis_url


async def run(args: argparse.Namespace) -> list[str]:
    """The problems found, one line per booking that broke a rule (empty when all held)."""
    rng = random.Random(args.seed)
    with _backing(args.database_url, args.redis_url) as (database_url, redis_url):
        await asyncio.to_thread(migrate, database_url)
        secret = secrets.token_urlsafe(32)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "JWT_SECRET": secret,
            "WEB_PUSH": "off",  # the mechanics here have no push subscriptions
            "REDIS_KEY_PREFIX": f"chaos-{uuid.uuid4().hex[:8]}",
            "PRIORITY_WINDOW_S": str(args.window_s),
            "NOTIFY_WAIT_WINDOW_S": str(args.window_s),
            "OFFER_ACK_TIMEOUT_S": str(args.window_s / 3),
            "HEARTBEAT_INTERVAL_S": "0.5",
            "PRESENCE_TTL_S": "2",
            "LOG_LEVEL": "ERROR",
        }
        server = Server(env)
        await server.start()
        admin = {"Authorization": f"Bearer {mint_token(secret, sub=str(uuid.uuid4()), role=Role.ADMIN)}"}
        stop = asyncio.Event()
        apps: list[App] = []
        tasks: list[asyncio.Task[None]] = []
        booked: list[str] = []
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
                for i in range(args.mechanics):
                    created = await http.post("/api/admin/mechanics", json={"name": f"Chaos {i}"}, headers=admin)
                    mechanic_id = created.json()["id"]
                    token = mint_token(secret, sub=mechanic_id, role=Role.MECHANIC)
                    apps.append(App(mechanic_id, token, f"ws://127.0.0.1:{server.port}/ws/mechanic"))
            tasks = [asyncio.create_task(app.run(stop)) for app in apps]
            await asyncio.sleep(1)
            for _ in range(args.rounds):
                async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
                    for _ in range(args.bookings):
                        body: dict[str, str] = {"session_type": "video", "plan_code": "standard"}
                        if rng.random() < 0.5:
                            body |= {"routing": "priority", "preferred_mechanic_id": rng.choice(apps).mechanic_id}
                        # Each booking by a customer of its own: one may hold only one open request per favorite.
                        customer = mint_token(secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER)
                        response = await http.post(
                            "/api/session-requests", json=body, headers={"Authorization": f"Bearer {customer}"}
                        )
                        response.raise_for_status()
                        booked.append(response.json()["id"])
                await asyncio.sleep(rng.uniform(0, args.window_s))
                await server.kill()
                await server.start()
            return await _check(server, admin, booked, apps)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.kill()


async def _check(server: Server, admin: dict[str, str], booked: list[str], apps: list[App]) -> list[str]:
    told: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
        for request_id in booked:
            for _ in range(100):  # the last round's bookings may still be falling back
                current = (await http.get(f"/api/session-requests/{request_id}", headers=admin)).json()
                winner = current["mechanic_id"]
                if current["status"] == "accepted" and any(
                    request_id in a.told for a in apps if a.mechanic_id == winner
                ):
                    break
                await asyncio.sleep(0.1)
            events = (await http.get(f"/api/admin/session-requests/{request_id}/events", headers=admin)).json()
            accepts = [e for e in events["events"] if e["kind"] == "accepted"]
            for app in apps:
                if request_id in app.told:
                    told[request_id].add(app.mechanic_id)
            if current["status"] != "accepted":
                problems.append(f"{request_id}: never accepted (status {current['status']})")
            elif len(accepts) != 1:
                problems.append(f"{request_id}: {len(accepts)} `accepted` events in its log")
            elif current["mechanic_id"] not in told[request_id]:
                problems.append(f"{request_id}: its winner {current['mechanic_id']} was never told")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--bookings", type=int, default=4, help="bookings per round")
    parser.add_argument("--mechanics", type=int, default=4)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    cli.run(_report(args))


async def _report(args: argparse.Namespace) -> int:
    problems = await run(args)
    for problem in problems:
        print(problem)
    print(f"{args.rounds} rounds, {args.rounds * args.bookings} bookings: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    main()
