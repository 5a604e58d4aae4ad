"""Capacity: how many mechanics one machine holds online, measured in steps (`make bench BENCH_ARGS="--only
capacity"`; `--capacity-steps 2000,5000` runs in seconds).

The server is `make run WORKERS=<n>`'s: `scripts.serve --production --workers n` with every setting at its shipped
default (heartbeats every 10 s, 30 s TTL, frame limits, log) on one Redis. A process may hold at most 20,000 open
files here, so the sockets are spread over enough workers (`WORKER_SOCKETS` each, on average) and enough client
processes (`bench/capacity_client.py`, `CLIENT_SOCKETS` each), every client on a loopback source address of its
own (127.0.0.2 and up) so that no address runs out of ephemeral ports. At each step, with every mechanic
heartbeating:

- heartbeat → `heartbeat_ack` (every socket's, for `MEASURE_S`), and a presence transition visible on the status
  endpoint (`bench/visibility.py`);
- the status poll's p99 at 1,000 requests a second from wrk (beside the heartbeats), and a priority booking's
  sent → offer on its favorite's socket;
- one broadcast to everyone: from the booking's send to its offer on the last socket;
- RSS per connection, and over `MEASURE_S` of heartbeats alone: server, client and Redis CPU, Redis memory, and
  Redis commands and bytes per mechanic per second;
- sockets lost, by the close code the server sent, and how late the clients' own heartbeat timers fired (a load
  generator starved of CPU stops sending, and its sockets are then rightly closed as silent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.auth import Role, mint_token
from bench.collector import settle_garbage
from bench.phases import http_load
from bench.servers import TUNED, Ours, pct, prepare_ours
from bench.visibility import transitions
from scripts.embedded_redis import EmbeddedRedis
from scripts.processes import PROJECT_ROOT, ServerProcess, spawn_python, wait_ready

WORKER_SOCKETS = 12_000  # per server worker on average: the kernel spreads accepts unevenly, the limit is 20,000
CLIENT_SOCKETS = 15_000  # per client process
HEARTBEAT_INTERVAL_S = 10.0  # the shipped default
MEASURE_S = 25.0  # two and a half heartbeat intervals: every socket's heartbeats, twice over
STATUS_RATE_PER_S = 1000  # the status poll's load while its p99 is read (the heartbeats go on beside it)
OFFERS = 20
PROBES = 20  # presence transitions watched per step


@dataclass
class Client:
    process: asyncio.subprocess.Process

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.process.stdout.readline())
        return answer


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(values, 0.5), 2),
        "p99_ms": round(pct(values, 0.99), 2),
        "max_ms": round(max(values), 2),
    }


async def _unless_broken(measure: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A measurement that fails at a step the machine cannot carry (a transition never visible, a booking
    unanswered) is reported as what failed, so that the step's other figures are still told."""
    try:
        return await measure
    except (TimeoutError, OSError, httpx.HTTPError, ConnectionClosed) as error:
        return {"failed": f"{type(error).__name__}: {error}"}


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _rss(pid: int) -> int:
    return sum(p.memory_info().rss for p in _tree(pid))


def _cpu(pid: int) -> float:
    return float(sum(p.cpu_times().user + p.cpu_times().system for p in _tree(pid)))


async def _redis_counters(redis: Redis) -> dict[str, float]:
    info = await redis.info()
    return {
        "cpu_s": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        "commands": float(info["total_commands_processed"]),
        "bytes": float(info["total_net_input_bytes"]) + float(info["total_net_output_bytes"]),
        "memory": float(info["used_memory"]),
    }


async def _offer_latency(base_url: str, ws_url: str, secret: str, favorite: str) -> dict[str, float]:
    """Priority bookings for a connected favorite, one at a time: sent → offer on its socket; it accepts each, so
    none falls back to everyone."""
    token = mint_token(secret, sub=favorite, role=Role.MECHANIC)
    latencies: list[float] = []
    async with connect(f"{ws_url}?token={token}", compression=None, max_queue=None) as app:
        await app.recv()  # welcome
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            for _ in range(OFFERS):
                customer = mint_token(secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER, name="Capacity")
                body = {"session_type": "video", "plan_code": "standard", "routing": "priority"}
                request = http.build_request(
                    "POST",
                    "/api/session-requests",
                    json={**body, "preferred_mechanic_id": favorite},
                    headers={"Authorization": f"Bearer {customer}"},
                )
                sent = time.perf_counter()
                booked = (await http.send(request)).json()
                offer = await _next_offer(app, booked["id"])
                latencies.append((time.perf_counter() - sent) * 1000)
                await app.send(json.dumps({"type": "accept", "request_id": booked["id"], "attempt": offer["attempt"]}))
    return _summary(latencies)


async def _next_offer(app: ClientConnection, request_id: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(app.recv(), 30))
        if frame.get("type") == "offer" and frame.get("request_id") == request_id:
            return dict(frame)


async def _broadcast(base_url: str, ws_url: str, secret: str, closer: str, clients: list[Client]) -> dict[str, Any]:
    """One broadcast booking: its send → its offer on the last of every client's sockets. A mechanic of the probe's
    then accepts it, so that it stays out of later steps' greetings."""
    customer = mint_token(secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER, name="Capacity")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        request = http.build_request(
            "POST",
            "/api/session-requests",
            json={"session_type": "video", "plan_code": "standard", "routing": "broadcast"},
            headers={"Authorization": f"Bearer {customer}"},
        )
        sent = time.time()
        booked = (await http.send(request)).json()
    answers = await asyncio.gather(
        *(client.ask({"cmd": "arrivals", "request_id": booked["id"], "seconds": 60}) for client in clients)
    )
    token = mint_token(secret, sub=closer, role=Role.MECHANIC)
    async with connect(f"{ws_url}?token={token}", compression=None, max_queue=None) as app:
        offer = await _next_offer(app, booked["id"])
        await app.send(json.dumps({"type": "accept", "request_id": booked["id"], "attempt": offer["attempt"]}))
        await asyncio.sleep(0.5)
    lasts = [a["last"] for a in answers if a["last"] is not None]
    return {
        "reached": sum(a["arrived"] for a in answers),
        "sockets": sum(a["open"] for a in answers),
        "to_last_socket_ms": round((max(lasts) - sent) * 1000, 1) if lasts else None,
    }


async def capacity_phase(steps: list[int], database_url: str | None = None) -> list[dict[str, Any]]:
    largest = max(steps)
    workers = max(1, math.ceil(largest / WORKER_SOCKETS))
    client_count = max(1, math.ceil(largest / CLIENT_SOCKETS))
    probes = PROBES + 2  # the transitions' mechanics, the offers' favorite, the broadcast's closer
    with EmbeddedRedis() as embedded, tempfile.TemporaryDirectory() as workdir:
        ours = await prepare_ours(embedded.url, database_url or f"sqlite:///{workdir}/capacity.db", largest + probes)
        mechanic_ids, probe_ids = ours.mechanic_ids[:largest], ours.mechanic_ids[largest:]
        server = _start_server(ours, workers)
        clients: list[Client] = []
        redis = Redis.from_url(embedded.url, decode_responses=True)
        try:
            await wait_ready(server, timeout_s=60)
            clients = await _start_clients(ours, server.ws_url, mechanic_ids, client_count, Path(workdir))
            idle_rss = _rss(server.process.pid)
            results = []
            for step in steps:
                results.append(
                    await _step(step, ours, server, clients, redis, idle_rss, mechanic_ids, probe_ids, workers)
                )
                print(json.dumps(results[-1]), file=sys.stderr)
            return results
        finally:
            for client in clients:
                if client.process.returncode is None:
                    client.process.kill()
                    await client.process.wait()
            server.stop()
            server.kill_group()  # any worker the server's own stop left behind
            await redis.aclose()


def _start_server(ours: Ours, workers: int) -> ServerProcess:
    env = {name: value for name, value in ours.env().items() if name not in TUNED}
    args = ["-m", "scripts.serve", "--production", "--port", "{port}", "--workers", str(workers)]
    return spawn_python(args, env, subprocess.DEVNULL, own_process_group=True)


async def _start_clients(ours: Ours, ws_url: str, mechanic_ids: list[str], count: int, workdir: Path) -> list[Client]:
    clients = []
    for n in range(count):
        tokens = workdir / f"tokens-{n}.txt"
        mine = mechanic_ids[n::count]
        tokens.write_text("\n".join(mint_token(ours.secret, sub=m, role=Role.MECHANIC) for m in mine))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.capacity_client",
            ws_url,
            f"127.0.0.{2 + n}",
            str(tokens),
            str(HEARTBEAT_INTERVAL_S),
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=2**26,  # a measurement's answer carries every heartbeat's time
        )
        clients.append(Client(process))
    return clients


async def _step(
    step: int,
    ours: Ours,
    server: ServerProcess,
    clients: list[Client],
    redis: Redis,
    idle_rss: int,
    mechanic_ids: list[str],
    probe_ids: list[str],
    workers: int,
) -> dict[str, Any]:
    settle_garbage()
    started = time.perf_counter()
    connected = await asyncio.gather(
        *(client.ask({"cmd": "connect", "total": math.ceil(step / len(clients))}) for client in clients)
    )
    connect_s = time.perf_counter() - started
    await asyncio.sleep(3)  # the last sockets' greetings and first heartbeats
    rss = _rss(server.process.pid)
    customer = {"Authorization": "Bearer " + mint_token(ours.secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER)}
    clients_cpu_before = sum(_cpu(client.process.pid) for client in clients)
    cpu_before, redis_before = _cpu(server.process.pid), await _redis_counters(redis)
    measured = await asyncio.gather(*(client.ask({"cmd": "measure", "seconds": MEASURE_S}) for client in clients))
    cpu_after, redis_after = _cpu(server.process.pid), await _redis_counters(redis)
    clients_cpu_after = sum(_cpu(client.process.pid) for client in clients)
    status_url = f"{server.base_url}/api/mechanics/{mechanic_ids[0]}/status"
    status = await asyncio.to_thread(http_load, status_url, customer, 10, 4, STATUS_RATE_PER_S)
    open_sockets = sum(a["open"] for a in connected)
    acks = [ms for answer in measured for ms in answer["acks_ms"]]
    per_mechanic_s = open_sockets * MEASURE_S
    visible = await _unless_broken(
        transitions(
            [f"{server.ws_url}?token={mint_token(ours.secret, sub=m, role=Role.MECHANIC)}" for m in probe_ids[:PROBES]],
            server.port,
            [f"/api/mechanics/{m}/status" for m in probe_ids[:PROBES]],
            customer["Authorization"].split()[1],
        )
    )
    return {
        "mechanics": step,
        "open_sockets": open_sockets,
        "failed_connects": sum(a["failed"] for a in connected),
        "lost_sockets": sum(a["lost"] for a in measured),
        "lost_by_close_code": dict(sum((Counter(a["lost_by_close_code"]) for a in measured), Counter[str]())),
        "workers": workers,
        "client_processes": len(clients),
        "connect_s": round(connect_s, 1),
        # The latest any client's own heartbeat timer fired, from its first socket to the end of the measurement.
        "client_heartbeat_latest_s": round(max(a["latest_beat_s"] for a in measured), 2),
        "heartbeat_ack": {**_summary(acks), "count": len(acks)},
        "status": {"rps": status["rps"], "p99_ms": status["p99_ms"]},
        "transition_visible": visible,
        "offer": await _unless_broken(_offer_latency(server.base_url, server.ws_url, ours.secret, probe_ids[PROBES])),
        "broadcast": await _unless_broken(
            _broadcast(server.base_url, server.ws_url, ours.secret, probe_ids[PROBES + 1], clients)
        ),
        "server_rss_mib": round(rss / 2**20),
        "rss_per_connection_kib": round((rss - idle_rss) / max(1, open_sockets) / 1024, 2),
        "server_cpu_percent": round((cpu_after - cpu_before) / MEASURE_S * 100),
        # The apps share the server's cores here: what they take is what the server cannot have.
        "clients_cpu_percent": round((clients_cpu_after - clients_cpu_before) / MEASURE_S * 100),
        "redis_cpu_percent": round((redis_after["cpu_s"] - redis_before["cpu_s"]) / MEASURE_S * 100),
        "redis_memory_mib": round(redis_after["memory"] / 2**20),
        "redis_commands_per_mechanic_s": round(
            (redis_after["commands"] - redis_before["commands"]) / per_mechanic_s, 3
        ),
        "redis_bytes_per_mechanic_s": round((redis_after["bytes"] - redis_before["bytes"]) / per_mechanic_s, 1),
    }


def _steps(text: str) -> list[int]:
    try:
        steps = [int(step) for step in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps are whole numbers of mechanics, comma-separated: {text!r}") from None
    if any(step < 1 for step in steps):
        raise argparse.ArgumentTypeError(f"every step is at least 1 mechanic: {text!r}")
    return steps


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A quick look at some steps of the capacity phase, e.g. 2000,5000.")
    parser.add_argument("steps", type=_steps, help="mechanics online at each step, comma-separated")
    parser.add_argument(
        "--database-url", help="the server's database (default: a SQLite file of the run's own, as `make run`)"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(capacity_phase(args.steps, args.database_url)), indent=2))
