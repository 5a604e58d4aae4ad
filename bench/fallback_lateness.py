"""Fallback lateness: from a priority window's deadline to the broadcast offer on a mechanic's socket.

    python -m bench.fallback_lateness [--requests 200] [--other-keys 1000000] [--redis-url URL] [--as-shipped]

Starts a server process on a private Redis (or `--redis-url`) and a temporary SQLite database, fills Redis with
`--other-keys` keys carrying TTLs (as presence keys are), books `--requests` priority requests whose favorite
never answers, and prints p50/p99/max lateness in milliseconds, once without and once with the other keys, and
with `--as-shipped` once more beside them with the shipped log, heartbeat and TTL settings (on stderr; the figures
as one JSON line on stdout, which `make bench` reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from api.auth import Role, mint_token
from base.database import migrate
from base.redis_client import RedisClient
from base.redis_client import connect as connect_redis
from base.stats import percentile
from bench.collector import settle_garbage, uncollected
from scripts.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
WINDOW_S = 3.0
SHIPPED_HEARTBEAT_S = 10.0  # HEARTBEAT_INTERVAL_S's default, as the apps send them
# Bookings are created at this pace. From about 450 requests on (`make bench` books 1,000), the later bookings are
# still being made while the first windows lapse, as in service: those fallbacks queue behind them.
CREATE_PER_S = 150


async def fill(redis: RedisClient, count: int, prefix: str) -> None:
    """`count` keys with TTLs between 10 and 60 minutes, never touched again."""
    batch = 10_000
    for start in range(0, count, batch):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + batch, count)):
                pipe.set(f"{prefix}:{i}", "1", ex=600 + i % 3000)
            await pipe.execute()


async def measure(redis_url: str, requests: int, *, as_shipped: bool = False) -> list[float]:
    """Lateness in ms of `requests` fallbacks whose deadlines follow each other like their bookings. `as_shipped`:
    log, heartbeat interval and presence TTL at their defaults (the server's log is dropped, and the measuring app
    heartbeats as the apps do)."""
    secret = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{tmp}/bench.db"
        await asyncio.to_thread(migrate, database_url)
        port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "JWT_SECRET": secret,
            "WEB_PUSH": "off",
            "REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "PRIORITY_WINDOW_S": str(WINDOW_S),
            "NOTIFY_WAIT_WINDOW_S": str(WINDOW_S),
            "OFFER_ACK_TIMEOUT_S": "60",
        }
        if not as_shipped:
            # The measuring app does not heartbeat then: it must not be closed for silence while windows run.
            env |= {"LOG_LEVEL": "WARNING", "HEARTBEAT_INTERVAL_S": "1800", "PRESENCE_TTL_S": "3600"}
        log = subprocess.DEVNULL if as_shipped else None
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scripts.serve",
                "--production",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            return await _run(port, secret, requests, heartbeat_s=SHIPPED_HEARTBEAT_S if as_shipped else None)
        finally:
            server.terminate()
            server.wait()


async def _run(port: int, secret: str, requests: int, *, heartbeat_s: float | None) -> list[float]:
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {mint_token(secret, sub=str(uuid.uuid4()), role=Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(100):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        favorite = (await http.post("/api/admin/mechanics", json={"name": "Away"}, headers=admin)).json()["id"]
        helper = (await http.post("/api/admin/mechanics", json={"name": "Helper"}, headers=admin)).json()["id"]
        token = mint_token(secret, sub=helper, role=Role.MECHANIC)
        app = _App.start(f"ws://127.0.0.1:{port}/ws/mechanic?token={token}", heartbeat_s)
        try:
            deadlines = await _book(http, secret, favorite, requests, app)
            end = max(deadlines.values()) + 10
            while len(app.arrivals) < requests and time.time() < end:
                await asyncio.sleep(0.1)
                app.take()
        finally:
            app.stop()
    arrivals = app.arrivals
    missing = requests - len(arrivals)
    if missing:
        print(f"  {missing} fallbacks never arrived", file=sys.stderr)
    return [(arrivals[r] - deadlines[r]) * 1000 for r in arrivals]


async def _book(http: httpx.AsyncClient, secret: str, favorite: str, requests: int, app: _App) -> dict[str, float]:
    """Book `requests` priority requests at `CREATE_PER_S` a second; each one's deadline (epoch seconds)."""
    body = {
        "session_type": "chat",
        "plan_code": "quick",
        "routing": "notify_and_wait",  # the favorite is offline: they are notified, and the window runs
        "preferred_mechanic_id": favorite,
    }
    # Each booking by a customer of its own: a customer holds one open request per favorite.
    customers = [
        {"Authorization": f"Bearer {mint_token(secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER)}"}
        for _ in range(requests)
    ]
    deadlines: dict[str, float] = {}
    for customer in customers:  # the deadlines follow each other like the creations
        response = await http.post("/api/session-requests", json=body, headers=customer)
        response.raise_for_status()
        created = response.json()
        deadlines[created["id"]] = datetime.fromisoformat(created["priority_deadline"]).timestamp()
        app.take()
        await asyncio.sleep(1.0 / CREATE_PER_S)
    return deadlines


@dataclass
class _App:
    """The mechanic's app that the broadcasts reach, in a process of its own: the bookings this process makes
    meanwhile (a millisecond or two of its CPU each) would otherwise delay reading them, and count as the
    server's lateness."""

    process: BaseProcess
    pipe: Connection
    arrivals: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, url: str, heartbeat_s: float | None) -> _App:
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(target=_app, args=(url, heartbeat_s, theirs))
        process.start()
        if not ours.poll(30) or ours.recv() != "ready":
            process.kill()
            raise RuntimeError("the measuring app did not connect")
        return cls(process, ours)

    def take(self) -> None:
        """The arrivals reported so far."""
        while self.pipe.poll():
            request_id, at = self.pipe.recv()
            self.arrivals.setdefault(request_id, at)

    def stop(self) -> None:
        self.process.kill()
        self.process.join()


def _app(url: str, heartbeat_s: float | None, pipe: Connection) -> None:
    asyncio.run(_app_reading(url, heartbeat_s, pipe))


async def _app_reading(url: str, heartbeat_s: float | None, pipe: Connection) -> None:
    """Report each broadcast offer's arrival until the process is stopped; heartbeat every `heartbeat_s` (None:
    never, as the benchmarks' settings let it)."""
    async with connect(url, compression=None) as ws:
        await ws.recv()

        async def beat(every_s: float) -> None:
            while True:
                await asyncio.sleep(every_s)
                await ws.send('{"type":"heartbeat"}')

        beating = asyncio.create_task(beat(heartbeat_s)) if heartbeat_s is not None else None
        settle_garbage()
        pipe.send("ready")
        with uncollected():
            async for frame in ws:
                message = json.loads(frame)
                if message["type"] == "offer" and message["kind"] == "broadcast":
                    pipe.send((message["request_id"], time.time()))
        if beating is not None:
            beating.cancel()


def summary(label: str, lateness: list[float]) -> dict[str, float]:
    def ms(value: float | None) -> float:
        return float("nan") if value is None else round(value, 1)

    result = {
        "n": len(lateness),
        "p50_ms": ms(percentile(lateness, 0.5)),
        "p99_ms": ms(percentile(lateness, 0.99)),
        "max_ms": ms(max(lateness, default=None)),
        "mean_ms": ms(statistics.fmean(lateness) if lateness else None),
    }
    print(
        f"{label:<40} n={result['n']:<5} p50={result['p50_ms']:>7.1f} ms  p99={result['p99_ms']:>7.1f} ms  "
        f"max={result['max_ms']:>7.1f} ms",
        file=sys.stderr,
    )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--other-keys", type=int, default=1_000_000)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--as-shipped", action="store_true", help="then once more beside the keys, as shipped")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis()).url  # a Redis of its own only when none is named
        redis = connect_redis(url, max_connections=16)
        results = {"empty": summary("fallback lateness, no other keys", await measure(url, args.requests))}
        filler = f"bench-filler-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        await fill(redis, args.other_keys, filler)
        print(f"  (filled {args.other_keys} keys with TTLs in {time.monotonic() - started:.1f}s)", file=sys.stderr)
        beside = await measure(url, args.requests)
        results["million_keys"] = summary(f"with {args.other_keys} other expiring keys", beside)
        if args.as_shipped:
            shipped = await measure(url, args.requests, as_shipped=True)
            label = f"with {args.other_keys} other expiring keys, as shipped"
            results["million_keys_as_shipped"] = summary(label, shipped)
        if args.redis_url:
            batch: list[str] = []
            async for key in redis.scan_iter(match=f"{filler}:*", count=10_000):
                batch.append(key)
                if len(batch) == 10_000:
                    await redis.unlink(*batch)  # one command per batch (per slot on a cluster), not per key
                    batch = []
            if batch:
                await redis.unlink(*batch)
        await redis.aclose()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
