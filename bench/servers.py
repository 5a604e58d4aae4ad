"""The servers a benchmark runs: favdispatch (`Ours`), the bare and peer servers, each in a process of its own
on a free loopback port, and waiting for them to be idle."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import sqlalchemy as sa

from api.auth import Role, mint_token
from base.clock import utc_now
from base.database import migrate, open_database
from base.stats import percentile
from base.tables import mechanics
from scripts.processes import ServerProcess, spawn_python, wait_listening

ROOT = Path(__file__).resolve().parent.parent


IDLE_SAMPLE_S = 0.25


async def servers_idle(*servers: Server, timeout_s: float = 30.0) -> None:
    """Wait until the servers have digested the phase before: 5,000 sockets just closed are seconds of presence
    work, and a trial timed meanwhile would measure that backlog instead of its own transition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = [server.cpu_seconds() for server in servers]
        await asyncio.sleep(IDLE_SAMPLE_S)
        if all(server.cpu_seconds() - b < IDLE_SAMPLE_S * 0.1 for server, b in zip(servers, before, strict=True)):
            return  # each under a tenth of a core
    print(f"servers still busy after {timeout_s:.0f} s: the next trials include their backlog", file=sys.stderr)


def pct(values: list[float], q: float) -> float:
    found = percentile(values, q)
    return float("nan") if found is None else found


class Server(ServerProcess):
    """A benchmarked server process, whose memory and CPU time the phases read."""

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


def spawn(args: list[str], env: dict[str, str] | None = None, output: IO[bytes] | int | None = None) -> Server:
    """`python <args>` (`{port}`: a free port), once it accepts connections; `output`: where its log goes."""
    started = spawn_python(args, {**os.environ, **(env or {})}, output)
    server = Server(started.process, started.port)
    wait_listening(server)
    return server


# What `Ours.env` sets for the benchmarks beyond naming the run's stores: left at their defaults by `start_as_shipped`.
TUNED = frozenset({"LOG_LEVEL", "SOCKET_FRAMES_PER_S", "SOCKET_FRAME_BURST", "HEARTBEAT_INTERVAL_S", "PRESENCE_TTL_S"})


@dataclass
class Ours:
    """Our server's environment for one run: a private Redis, a fresh SQLite database, N mechanics."""

    redis_url: str
    database_url: str
    secret: str
    prefix: str
    mechanic_ids: list[str]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "JWT_SECRET": self.secret,
            "WEB_PUSH": "off",  # no benchmark mechanic has a push subscription
            "REDIS_KEY_PREFIX": self.prefix,
            "LOG_LEVEL": "WARNING",
            # The benchmarks measure throughput and idle memory: no frame rate limit, and idle benchmark clients
            # (which do not heartbeat) are not closed for silence.
            "SOCKET_FRAMES_PER_S": "1000000000",
            "SOCKET_FRAME_BURST": "1000000000",
            "HEARTBEAT_INTERVAL_S": "1800",
            "PRESENCE_TTL_S": "3600",
            **extra,
        }

    def start(self, **extra: str) -> Server:
        return spawn(["-m", "scripts.serve", "--production", "--port", "{port}"], self.env(**extra))

    def start_as_shipped(self) -> Server:
        """With the shipped defaults (log, heartbeat, presence TTL, frame limits): only what names this run's Redis,
        database, secret and keys is set. Its log (a few lines per socket) is dropped, as a terminal would show it."""
        env = {name: value for name, value in self.env().items() if name not in TUNED}
        return spawn(["-m", "scripts.serve", "--production", "--port", "{port}"], env, subprocess.DEVNULL)

    def urls(self, servers: list[Server], count: int) -> list[str]:
        return [
            f"ws://127.0.0.1:{servers[i % len(servers)].port}/ws/mechanic?token="
            + mint_token(self.secret, sub=self.mechanic_ids[i], role=Role.MECHANIC)
            for i in range(count)
        ]

    def customer(self) -> dict[str, str]:
        token = mint_token(self.secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER, name="Bench")
        return {"Authorization": f"Bearer {token}"}


async def prepare_ours(redis_url: str, database_url: str, count: int) -> Ours:
    await asyncio.to_thread(migrate, database_url)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    database = open_database(database_url)
    await database.connect()
    now = utc_now()
    for start in range(0, count, 500):
        rows = [
            {"id": i, "name": f"Bench {n}", "provider_type": "independent", "created_at": now}
            for n, i in enumerate(ids[start : start + 500], start)
        ]
        await database.execute(sa.insert(mechanics).values(rows))
    await database.disconnect()
    return Ours(redis_url, database_url, uuid.uuid4().hex, f"bench-{uuid.uuid4().hex[:8]}", ids)


def bare_urls(server: Server, count: int) -> list[str]:
    return [f"ws://127.0.0.1:{server.port}/"] * count


def socketio_urls(servers: list[Server], count: int) -> list[str]:
    return [
        f"ws://127.0.0.1:{servers[i % len(servers)].port}/socket.io/?EIO=4&transport=websocket" for i in range(count)
    ]


@asynccontextmanager
async def running(*servers: Server):  # type: ignore[no-untyped-def]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def redis_binary() -> str:
    from scripts.embedded_redis import redis_server_binary

    return redis_server_binary()
