"""Break the server or its Redis at random moments while bookings are in flight; check nothing was lost or doubled.

    python -m scripts.chaos [--rounds 20] [--bookings 4] [--mechanics 3] [--window-s 1]
                            [--redis-kills N | --failover] [--workers 1]
                            [--database-url postgresql://…] [--redis-url redis://…] [--seed 1]

Faults, one kind a run:
- the server (default): each of `--rounds` rounds books, then SIGKILLs the server mid-window and restarts it;
- `--redis-kills N`: N rounds each SIGKILL a private Redis mid-window and restart it empty after a random pause;
- `--failover`: a private local Redis Cluster (three primaries, one a replica's), priority windows open, the
  primary holding most of them SIGKILLed; its replica takes over.

Every booking is an intent of its own customer, retried as mobile clients do: with one `Idempotency-Key`, on a
5xx, a timeout or a refused connection. Half go `priority` to a favorite whose app acks and never accepts (so
they fall back after the window), half to everyone. `--mechanics` apps accept every offer; all apps heartbeat and
reconnect when closed. At the end each intent must have made exactly one request (`lost`, `doubled`), each
request been accepted exactly once, its winner told on its socket (`accepted`, or `assigned` in a greeting:
`untold`), offered to some app within 10 s of the moment Redis could take it (`stranded`), and a priority
request fallen back within 5 s of its deadline. Exits non-zero,
naming each problem. With no URLs it runs on a private Redis and a throw-away SQLite file; traffic stays on
loopback.
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
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from api.auth import Role, mint_token
from base.database import migrate
from scripts import cli
from scripts.embedded_redis import EmbeddedCluster, EmbeddedRedis, cluster_binary, free_port
from scripts.processes import ServerProcess, spawn_python, wait_ready

OFFERED_WITHIN_S = 10.0  # a request must reach some app this soon after Redis can take it
FALLS_BACK_WITHIN_S = 5.0  # a priority request leaves its window this soon after its deadline, Redis or not
SETTLE_S = 30.0  # how long the last bookings get to fall back, be accepted and be told


@dataclass
class Server:
    """The server under test, restarted on the same port after each crash."""

    env: dict[str, str]
    workers: int = 1
    port: int = field(default_factory=free_port)
    running: ServerProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/mechanic"

    async def start(self) -> None:
        args = ["-m", "scripts.serve", "--production", "--port", "{port}", "--workers", str(self.workers)]
        self.running = spawn_python(args, self.env, port=self.port, own_process_group=True)
        await wait_ready(self.running, timeout_s=30)

    async def kill(self) -> None:
        if self.running is not None:
            await asyncio.to_thread(self.running.kill_group)


@dataclass
class App:
    """A mechanic's app: reconnects with backoff, acks every offer and accepts it unless it is the reluctant
    favorite; remembers which requests it was offered (first, loop time) and which it was told it won."""

    mechanic_id: str
    token: str
    ws_url: str
    accepts: bool = True
    told: set[str] = field(default_factory=set)
    offered_at: dict[str, float] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            beating: asyncio.Task[None] | None = None
            try:
                subprotocols = [Subprotocol(f"bearer.{self.token}")]
                async with connect(self.ws_url, subprotocols=subprotocols, open_timeout=2) as ws:
                    async for raw in ws:
                        message = json.loads(raw)
                        kind = message.get("type")
                        if kind == "offer":
                            self.offered_at.setdefault(message["request_id"], loop.time())
                            await ws.send(json.dumps({"type": "ack", "offer_id": message["offer_id"]}))
                            if self.accepts:
                                accept = {"type": "accept", "request_id": message["request_id"]}
                                await ws.send(json.dumps(accept))
                        elif kind in ("accepted", "assigned"):
                            self.told.add(message["request_id"])
                        elif kind == "welcome":
                            beating = asyncio.create_task(_beat(ws, float(message["heartbeat_interval_s"])))
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.2)
            finally:
                if beating is not None:
                    beating.cancel()


async def _beat(ws: ClientConnection, interval_s: float) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(interval_s)
            await ws.send('{"type":"heartbeat"}')


@dataclass
class Intent:
    """One customer's booking, retried with one key until it is answered 201."""

    body: dict[str, str]
    token: str = ""
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str | None = None
    answered: set[str] = field(default_factory=set)  # every id the retries were answered with
    sent_at: float = 0.0
    refused: str | None = None  # a 4xx: an intent the server would not take


class RedisUptime:
    """When Redis could take work: a request is owed its offer from the first such moment after its booking."""

    def __init__(self) -> None:
        self._down_since: float | None = None
        self._outages: list[tuple[float, float]] = []

    def down(self) -> None:
        self._down_since = asyncio.get_running_loop().time()

    def up(self) -> None:
        if self._down_since is not None:
            self._outages.append((self._down_since, asyncio.get_running_loop().time()))
            self._down_since = None

    def ready_after(self, moment: float) -> float:
        for start, end in self._outages:
            if start <= moment < end:
                return end
        return moment


async def _book(http: httpx.AsyncClient, intent: Intent, give_up_at: float) -> None:
    """As a mobile client: retry with the same key on 5xx, timeouts and refused connections."""
    loop = asyncio.get_running_loop()
    intent.sent_at = loop.time()
    headers = {"Authorization": f"Bearer {intent.token}", "Idempotency-Key": intent.key}
    while loop.time() < give_up_at:
        try:
            response = await http.post("/api/session-requests", json=intent.body, headers=headers)
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 201:
            intent.request_id = response.json()["id"]
            intent.answered.add(intent.request_id)
            return
        if response.status_code < 500:
            intent.refused = f"{response.status_code} {response.text[:200]}"
            return
        await asyncio.sleep(0.2)


@dataclass
class Run:
    args: argparse.Namespace
    server: Server
    secret: str
    uptime: RedisUptime = field(default_factory=RedisUptime)
    apps: list[App] = field(default_factory=list)
    favorite: App | None = None
    intents: list[Intent] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.secret, sub=str(uuid.uuid4()), role=Role.ADMIN)}"}

    async def add_mechanics(self) -> None:
        async with httpx.AsyncClient(base_url=self.server.base_url, timeout=5) as http:
            for i in range(self.args.mechanics + 1):
                created = await http.post("/api/admin/mechanics", json={"name": f"Chaos {i}"}, headers=self.admin)
                created.raise_for_status()
                mechanic_id = created.json()["id"]
                token = mint_token(self.secret, sub=mechanic_id, role=Role.MECHANIC)
                app = App(mechanic_id, token, self.server.ws_url, accepts=i > 0)
                self.apps.append(app)
        self.favorite = self.apps[0]

    def new_intents(self, rng: random.Random, count: int) -> list[Intent]:
        assert self.favorite is not None
        made = []
        for i in range(count):
            body = {"session_type": "video", "plan_code": "standard"}
            if i % 2 == 0:
                body |= {"routing": "priority", "preferred_mechanic_id": self.favorite.mechanic_id}
            token = mint_token(self.secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER)
            made.append(Intent(body=body, token=token))
        rng.shuffle(made)
        self.intents += made
        return made

    async def round(self, rng: random.Random, fault: Callable[[], Awaitable[None]]) -> None:
        """This round's intents, each sent at a random moment of a window, and the fault at another: some are
        booked before it, some while it lasts, some after."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + SETTLE_S

        async def later(intent: Intent) -> None:
            await asyncio.sleep(rng.uniform(0, self.args.window_s))
            await _book(http, intent, give_up_at)

        async with httpx.AsyncClient(base_url=self.server.base_url, timeout=3) as http:
            booking = [asyncio.create_task(later(i)) for i in self.new_intents(rng, self.args.bookings)]
            await asyncio.sleep(rng.uniform(0, self.args.window_s))
            await fault()
            await asyncio.gather(*booking)

    async def check(self) -> list[str]:
        """One line per rule broken."""
        problems = [f"intent {i.key}: refused {i.refused}" for i in self.intents if i.refused]
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(base_url=self.server.base_url, timeout=5) as http:
            for intent in self.intents:
                if intent.refused:
                    continue
                mine = await http.get(
                    "/api/customer/session-requests?status=recent", headers={"Authorization": f"Bearer {intent.token}"}
                )
                stored = [r["id"] for r in mine.json()["requests"]]
                if len(stored) != 1 or len(intent.answered) != 1 or intent.request_id not in stored:
                    kind = "lost" if not stored else "doubled"
                    problems.append(
                        f"intent {intent.key}: {kind} (stored {stored}, answered {sorted(intent.answered)})"
                    )
                    continue
                problems += await self._check_request(http, stored[0], intent, loop.time() + SETTLE_S)
        return problems

    async def _check_request(self, http: httpx.AsyncClient, request_id: str, intent: Intent, until: float) -> list[str]:
        loop = asyncio.get_running_loop()
        while True:
            current = (await http.get(f"/api/session-requests/{request_id}", headers=self.admin)).json()
            winner = current["mechanic_id"]
            told = any(request_id in app.told for app in self.apps if app.mechanic_id == winner)
            if (current["status"] == "accepted" and told) or loop.time() > until:
                break
            await asyncio.sleep(0.2)
        events = (await http.get(f"/api/admin/session-requests/{request_id}/events", headers=self.admin)).json()
        accepts = sum(1 for e in events["events"] if e["kind"] == "accepted")
        offers = [app.offered_at[request_id] for app in self.apps if request_id in app.offered_at]
        ready_at = self.uptime.ready_after(intent.sent_at)
        if current["status"] != "accepted":
            return [f"{request_id}: lost (status {current['status']}, phase {current['phase']})"]
        if accepts != 1:
            return [f"{request_id}: accepted {accepts} times"]
        if not told:
            return [f"{request_id}: untold (its winner {winner} was never told)"]
        if current["fallback_broadcast_at"] and current["priority_deadline"]:
            late_s = (
                _instant(current["fallback_broadcast_at"]) - _instant(current["priority_deadline"])
            ).total_seconds()
            if late_s > FALLS_BACK_WITHIN_S:
                return [f"{request_id}: fell back {late_s:.1f}s after its deadline"]
        if not offers or min(offers) - ready_at > OFFERED_WITHIN_S:
            late = f"{min(offers) - ready_at:.1f}s" if offers else "never"
            return [f"{request_id}: stranded (offered {late} after Redis could take it)"]
        return []


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@contextlib.asynccontextmanager
async def _redis(args: argparse.Namespace) -> AsyncIterator[tuple[str, EmbeddedRedis | EmbeddedCluster | None]]:
    """The Redis to use, and what the faults may kill: a private Redis or cluster (never the caller's)."""
    if args.failover:
        binary = cluster_binary()
        if binary is None:
            raise SystemExit("--failover needs redis-server 7 or later on PATH (it runs a local cluster)")
        with EmbeddedCluster(binary, node_timeout_ms=1000) as cluster:
            yield cluster.url, cluster
    elif args.redis_url is not None:
        if args.redis_kills:
            raise SystemExit("--redis-kills runs its own Redis: leave --redis-url out")
        yield args.redis_url, None
    else:
        with EmbeddedRedis() as redis:
            yield redis.url, redis


async def run(args: argparse.Namespace) -> list[str]:
    """The problems found, one line each (empty when every rule held)."""
    rng = random.Random(args.seed)
    async with _redis(args) as (redis_url, breakable), contextlib.AsyncExitStack() as stack:
        database_url = args.database_url
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="favdispatch-chaos-"))
            database_url = f"sqlite:///{folder}/chaos.db"
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
        chaos = Run(args, Server(env, workers=args.workers), secret)
        await chaos.server.start()
        stack.push_async_callback(chaos.server.kill)
        await chaos.add_mechanics()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(app.run(stop)) for app in chaos.apps]
        try:
            await asyncio.sleep(1)
            if args.failover:
                assert isinstance(breakable, EmbeddedCluster)
                await chaos.round(rng, lambda: _fail_over(chaos, breakable))
            elif args.redis_kills:
                assert isinstance(breakable, EmbeddedRedis)
                for _ in range(args.redis_kills):
                    await chaos.round(rng, lambda: _kill_redis(chaos, breakable, rng))
            else:
                for _ in range(args.rounds):
                    await chaos.round(rng, lambda: _kill_server(chaos.server))
            return await chaos.check()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _kill_server(server: Server) -> None:
    await server.kill()
    await server.start()


async def _kill_redis(chaos: Run, redis: EmbeddedRedis, rng: random.Random) -> None:
    """SIGKILL, then restart empty after a random pause (as a crashed Redis without persistence comes back)."""
    redis.kill()
    chaos.uptime.down()
    await asyncio.sleep(rng.uniform(0.2, 3.0))
    await asyncio.to_thread(redis.start)
    chaos.uptime.up()


async def _fail_over(chaos: Run, cluster: EmbeddedCluster) -> None:
    """SIGKILL the primary that has a replica; Redis can take work again once the replica is promoted."""
    cluster.primaries[0].kill()
    chaos.uptime.down()
    replica = Redis(port=cluster.replica.port, decode_responses=True)
    try:
        for _ in range(300):
            with contextlib.suppress(RedisError, OSError):
                if (await replica.info("replication"))["role"] == "master":
                    break
            await asyncio.sleep(0.1)
    finally:
        await replica.aclose()
    chaos.uptime.up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="server SIGKILLs (the default fault)")
    parser.add_argument("--redis-kills", type=int, default=0, help="SIGKILL a private Redis this many times")
    parser.add_argument("--failover", action="store_true", help="SIGKILL a primary of a private local cluster")
    parser.add_argument("--bookings", type=int, default=4, help="booking intents per round")
    parser.add_argument("--mechanics", type=int, default=3, help="apps that accept every offer")
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.redis_kills and args.failover:
        parser.error("choose one fault: --redis-kills or --failover")
    cli.run(_report(args))


async def _report(args: argparse.Namespace) -> int:
    problems = await run(args)
    for problem in problems:
        print(problem)
    fault = "Redis SIGKILLs" if args.redis_kills else "failover" if args.failover else "server SIGKILLs"
    rounds = args.redis_kills or (1 if args.failover else args.rounds)
    print(f"{rounds} rounds of {fault}, {rounds * args.bookings} booking intents: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    main()
