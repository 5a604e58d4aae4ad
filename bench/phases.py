"""The other phases: heartbeats, the status poll (wrk), offer latency, presence visibility, the Redis cost of a
targeted offer, fallback lateness and the cluster."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx

from bench.booking_latency import (
    Booking,
    burst,
    create_bare_table,
    http_post,
    postgres_database,
    reachable,
)
from bench.clients import (
    Arrivals,
    BenchClient,
    Kind,
    close_many,
    connect_many,
)
from bench.collector import settle_garbage
from bench.fanout import fan_out_alone
from bench.servers import (
    ROOT,
    Ours,
    Server,
    bare_urls,
    prepare_ours,
    running,
    servers_idle,
    socketio_urls,
    spawn,
)
from bench.visibility import transitions
from scripts.embedded_redis import EmbeddedCluster, EmbeddedRedis, cluster_binary

# 3. Heartbeats

HEARTBEAT_GIVE_UP_S = 10.0


async def heartbeats(clients: list[BenchClient], seconds: float) -> int:
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop(client: BenchClient) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            try:
                await asyncio.wait_for(client.heartbeat_round_trip(), HEARTBEAT_GIVE_UP_S)
            except TimeoutError:
                return  # a server that stopped answering (the peer's Redis manager can stall): stop counting it
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in clients))
    return round(count / (time.perf_counter() - started))


HEARTBEAT_ROUNDS = 5


async def heartbeat_rounds(contenders: dict[str, list[BenchClient]], seconds: float) -> dict[str, Any]:
    """Each contender's heartbeats/s as the median of HEARTBEAT_ROUNDS phases, the contenders taking turns.

    One phase swings by a third on this machine from one run to the next (the clients share its two cores with
    the servers); rounds taken in turn give every contender the same conditions, and the median discards the
    odd round.
    """
    rounds: dict[str, list[int]] = {name: [] for name in contenders}
    settle_garbage()
    for _ in range(HEARTBEAT_ROUNDS):
        for name, clients in contenders.items():
            rounds[name].append(await heartbeats(clients, seconds))
    return {
        name: {"clients": len(contenders[name]), "heartbeats_per_s": round(statistics.median(r)), "rounds": r}
        for name, r in rounds.items()
    }


async def heartbeat_phase(ours: Ours, redis_url: str, clients_each: int, seconds: float) -> dict[str, Any]:
    server = ours.start()
    bare = spawn(["-m", "bench.peers.bare_ws", "{port}"])
    peer = spawn(["-m", "bench.peers.socketio_peer", "{port}", redis_url])
    async with running(server, bare, peer):
        contenders = {
            "ours": await connect_many(Kind.OURS, ours.urls([server], clients_each)),
            "bare": await connect_many(Kind.BARE, bare_urls(bare, clients_each)),
            "socketio": await connect_many(Kind.SOCKETIO, socketio_urls([peer], clients_each)),
        }
        try:
            return await heartbeat_rounds(contenders, seconds)
        finally:
            for clients in contenders.values():
                await close_many(clients)


# 4. Status endpoint (load generator in a second process)


WRK_THREADS = 1


WRK_CONNECTIONS = 64


def http_load(
    url: str,
    headers: dict[str, str],
    seconds: float,
    connections: int = WRK_CONNECTIONS,
    rate_per_s: float | None = None,
) -> dict[str, float]:
    """Throughput and latency from `wrk` (a C load generator: a Python client tops out below the server). With
    `rate_per_s`, each connection waits between requests (wrk's `delay` hook) so that together they send about
    that many a second: a latency at a given load, not at saturation."""
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if rate_per_s is not None:
            script.write(f"function delay() return {connections / rate_per_s * 1000:.3f} end\n")
            script.flush()
            command += ["-s", script.name]
        run = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    return _parse_wrk(run.stdout)


STATUS_ROUNDS = 3


async def status_phase(ours: Ours, seconds: float) -> dict[str, Any]:
    """The status endpoint (an online mechanic, one never seen) and the bare route, in STATUS_ROUNDS turns; each
    keeps its median round by requests/s, as one wrk phase on this machine can swing by a fifth. Our server logs as
    shipped (`LOG_LEVEL=INFO`: the access log on, its poll lines summarised)."""
    server = ours.start(LOG_LEVEL="INFO")
    route = spawn(["-m", "bench.peers.bare_route", "{port}"])
    async with running(server, route):
        headers = ours.customer()
        online = await connect_many(Kind.OURS, ours.urls([server], 1))
        base = f"http://127.0.0.1:{server.port}/api/mechanics"
        targets = {
            "ours": (f"{base}/{ours.mechanic_ids[0]}/status", headers),
            "ours_never_seen": (f"{base}/{ours.mechanic_ids[-1]}/status", headers),
            "bare": (f"http://127.0.0.1:{route.port}/status", {}),
        }
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(STATUS_ROUNDS):
            for name, (url, with_headers) in targets.items():
                rounds[name].append(await asyncio.to_thread(http_load, url, with_headers, seconds))
        await close_many(online)
    return {
        name: {**sorted(r, key=lambda load: load["rps"])[len(r) // 2], "rounds_rps": [load["rps"] for load in r]}
        for name, r in rounds.items()
    }


def _parse_wrk(output: str) -> dict[str, float]:
    def millis(text: str) -> float:
        value, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:]
        return value / 1000 if unit == "us" else value if unit == "ms" else value * 1000

    result: dict[str, float] = {"errors": 0}
    for line in output.splitlines():
        fields = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = round(float(fields[1]))
        elif fields[:1] in (["50%"], ["99%"]):
            result[f"p{fields[0][:-1]}_ms"] = round(millis(fields[1]), 2)
        elif "requests in" in line:
            result["requests"] = int(fields[0])
        elif line.strip().startswith(("Non-2xx", "Socket errors")):
            result["errors"] += sum(int(n) for n in fields if n.isdigit())
    return result


# 5. Offer latency


BOOKING_ROUNDS = 3  # measured bursts per server, after one warm-up burst; the median of each figure is reported


async def offer_latency(redis_url: str, database_urls: tuple[str, str], bookings: int) -> dict[str, Any]:
    """Concurrent "Book Again" bookings: favdispatch with the benchmarks' settings, favdispatch as shipped (its
    access log on; the bursts end well within a heartbeat interval, so the clients need not beat), each on a
    database of its own, and the bare booking server (a table of its own in the first). The three are up together
    and take turns, one burst each per round: this machine's speed swings for minutes at a time, and three servers
    measured one after another met different speeds (favdispatch at 1.0 ms of CPU a booking in one full run, 0.5
    alone)."""
    ours = await prepare_ours(redis_url, database_urls[0], bookings)
    shipped = await prepare_ours(redis_url, database_urls[1], bookings)
    await create_bare_table(database_urls[0])
    body = {"session_type": "video", "plan_code": "quick", "routing": "priority"}
    bare_args = ["-m", "bench.peers.bare_booking", "{port}", database_urls[0], redis_url, ours.secret]
    servers = {"ours": ours.start(), "ours_as_shipped": shipped.start_as_shipped(), "bare": spawn(bare_args)}
    sides = {"ours": ours, "ours_as_shipped": shipped, "bare": ours}
    async with running(*servers.values()):
        favorites = {
            "ours": await connect_many(Kind.OURS, ours.urls([servers["ours"]], bookings)),
            "ours_as_shipped": await connect_many(Kind.OURS, shipped.urls([servers["ours_as_shipped"]], bookings)),
            "bare": await connect_many(
                Kind.BARE, [f"ws://127.0.0.1:{servers['bare'].port}/ws/{m}" for m in ours.mechanic_ids]
            ),
        }
        for clients in favorites.values():
            for favorite in clients:
                # Our unacked priority offer is resent: our apps ack, so our clients do (the bare server has none).
                favorite.acks_offers = favorite.kind is Kind.OURS
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        settle_garbage()
        for _ in range(1 + BOOKING_ROUNDS):  # a warm-up burst each, then the measured ones
            for name, server in servers.items():
                path = "/book" if name == "bare" else "/api/session-requests"
                rounds[name].append(await _burst(server, path, favorites[name], sides[name], body))
        for clients in favorites.values():
            await close_many(clients)
    return {
        name: {key: statistics.median(r[key] for r in measured[1:]) for key in measured[1]}
        for name, measured in rounds.items()
    }


async def _burst(
    server: Server, path: str, favorites: list[BenchClient], ours: Ours, body: dict[str, str]
) -> dict[str, float]:
    """Every favorite booked at once, each booking by a customer of its own."""
    bookings = [
        Booking(http_post(path, ours.customer(), {**body, "preferred_mechanic_id": m}), favorite)
        for m, favorite in zip(ours.mechanic_ids, favorites, strict=True)
    ]
    return await burst(server.port, bookings, "/healthz", server.cpu_seconds)


async def visibility_across(ours: Ours, first: Server, second: Server, trials: int) -> dict[str, Any]:
    """Mechanics connect to and leave `first` while `second` answers their status."""
    mechanics = ours.mechanic_ids[-trials:]
    settle_garbage()  # the clients just closed are garbage here: collected now, not inside a timed trial
    await servers_idle(first, second)
    return await transitions(
        ours.urls([first], len(ours.mechanic_ids))[-trials:],
        second.port,
        [f"/api/mechanics/{m}/status" for m in mechanics],
        ours.customer()["Authorization"].removeprefix("Bearer "),
    )


async def bookings_phase(redis_url: str, workdir: str, postgres_admin_url: str, bookings: int) -> dict[str, Any]:
    """Offer latency on SQLite and, where it answers, on PostgreSQL (a database of the benchmark's own)."""
    sqlite = (f"sqlite:///{workdir}/bookings.db", f"sqlite:///{workdir}/bookings-shipped.db")
    results: dict[str, Any] = {"sqlite": await offer_latency(redis_url, sqlite, bookings)}
    why_not = await reachable(postgres_admin_url)
    if why_not is None:
        name = f"favdispatch_bench_{uuid.uuid4().hex[:8]}"
        async with (
            postgres_database(postgres_admin_url, name) as url,
            postgres_database(postgres_admin_url, f"{name}_shipped") as shipped_url,
        ):
            results["postgresql"] = await offer_latency(redis_url, (url, shipped_url), bookings)
    else:
        results["postgresql"] = {"skipped": f"PostgreSQL not reachable at {postgres_admin_url} ({why_not})"}
    return results


# 7. Delivery cost per targeted offer


COST_MECHANICS = 40


PROCESS_COUNTS = (1, 2, 4)


async def delivery_cost(workdir: str, offers: int) -> dict[str, Any]:
    """Redis commands and bytes sent per targeted offer, as processes grow on one Redis: each envelope published to
    every process (before routing) against routed to the processes holding the favorite's devices. A booking's
    other Redis work (its window key, the keeper's note) is counted in both."""
    results: dict[str, Any] = {}
    for routed in (False, True):
        rows = results["routed" if routed else "to_every_process"] = {}
        for count in PROCESS_COUNTS:
            with EmbeddedRedis() as redis:  # a Redis of its own: its counters are this run's alone
                database = f"sqlite:///{workdir}/cost-{int(routed)}-{count}.db"
                ours = await prepare_ours(redis.url, database, COST_MECHANICS)
                servers = [ours.start(ROUTED_DELIVERIES=str(routed).lower()) for _ in range(count)]
                async with running(*servers):
                    rows[str(count)] = await _cost_of_offers(redis.url, ours, servers, offers)
    return results


async def _cost_of_offers(redis_url: str, ours: Ours, servers: list[Server], offers: int) -> dict[str, float]:
    from redis.asyncio import Redis

    clients = await connect_many(Kind.OURS, ours.urls(servers, COST_MECHANICS))
    per_mechanic = offers // COST_MECHANICS
    for client in clients:
        client.acks_offers = True  # as the apps do: no resends
        client.arrivals = Arrivals(expected=per_mechanic, marker='"kind":"priority"')
    redis = Redis.from_url(redis_url)
    await redis.config_resetstat()
    body = {"session_type": "chat", "plan_code": "quick", "routing": "priority"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{servers[0].port}", timeout=30) as http:
        for n in range(per_mechanic * COST_MECHANICS):
            favorite = {**body, "preferred_mechanic_id": ours.mechanic_ids[n % COST_MECHANICS]}
            (await http.post("/api/session-requests", json=favorite, headers=ours.customer())).raise_for_status()
    await asyncio.wait_for(asyncio.gather(*(c.arrivals.done.wait() for c in clients if c.arrivals)), 60)
    commands = await redis.info("commandstats")
    sent_bytes = (await redis.info("stats"))["total_net_output_bytes"]
    await redis.aclose()
    await close_many(clients)
    delivered = per_mechanic * COST_MECHANICS
    publishes = sum(v["calls"] for k, v in commands.items() if k in ("cmdstat_publish", "cmdstat_spublish"))
    return {
        "offers": delivered,
        "commands_per_offer": round(sum(v["calls"] for v in commands.values()) / delivered, 2),
        "publishes_per_offer": round(publishes / delivered, 2),
        "bytes_sent_per_offer": round(sent_bytes / delivered),
    }


# 8. On a Redis Cluster


async def cluster_phase(workdir: str, connections: int, windows: int, other_keys: int) -> dict[str, Any]:
    """Fan-out and fallback lateness with one process on a three-primary cluster (the million other keys spread
    over its primaries), to set beside the same figures on one Redis."""
    binary = cluster_binary()
    if binary is None:
        return {"skipped": "a Redis Cluster needs redis-server 7 or later"}
    with EmbeddedCluster(binary) as cluster:
        ours = await prepare_ours(cluster.url, f"sqlite:///{workdir}/cluster.db", connections)
        server = ours.start()
        async with running(server):
            fan = await fan_out_alone(ours, [server], connections)
        fallback = await asyncio.to_thread(fallback_lateness, cluster.url, windows, other_keys)
    return {"primaries": len(cluster.primaries), "fan_out": fan, "fallback_lateness": fallback}


def fallback_lateness(redis_url: str, windows: int, other_keys: int, *, as_shipped: bool = False) -> dict[str, Any]:
    """The fallback client runs in a process of its own: this one holds the objects of every phase before, and a
    garbage collection here while offers arrive would be counted as the server's lateness."""
    command = [sys.executable, "-m", "bench.fallback_lateness", "--requests", str(windows)]
    command += ["--other-keys", str(other_keys), "--redis-url", redis_url, *(["--as-shipped"] if as_shipped else [])]
    finished = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return dict(json.loads(finished.stdout.splitlines()[-1]))
