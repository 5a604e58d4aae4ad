"""`make bench`: favdispatch measured side by side with the limit (a bare server doing only the transport) and
with the peer (python-socketio with its Redis manager), in one run on this machine.

Writes bench/results.json and docs/benchmarks.md. All traffic stays on loopback and every phase is bounded.

    python -m bench.run [--connections 5000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
from datetime import UTC, datetime
from typing import Any

import uvloop
from tqdm import tqdm

from bench.capacity import capacity_phase
from bench.clients import (
    Kind,
)
from bench.fanout import fan_out, fan_out_alone, fan_out_beside_bare, fan_out_phase, fanning_peer, idle_memory, summary
from bench.phases import (
    bookings_phase,
    cluster_phase,
    delivery_cost,
    fallback_lateness,
    heartbeat_phase,
    status_phase,
    visibility_across,
)
from bench.report import machine, render
from bench.servers import ROOT, bare_urls, prepare_ours, redis_binary, running, socketio_urls, spawn
from bench.streams import WATCHED, streams_phase
from scripts.embedded_redis import EmbeddedRedis


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--heartbeat-clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput phase")
    parser.add_argument("--windows", type=int, default=1000, help="pending windows in the fallback phase")
    parser.add_argument("--other-keys", type=int, default=1_000_000)
    parser.add_argument("--bookings", type=int, default=100, help="concurrent bookings in the offer-latency phase")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the benchmark may create (and then drop) a database of its own",
    )
    parser.add_argument("--transitions", type=int, default=100, help="presence transitions timed across processes")
    parser.add_argument("--streams", type=int, default=10_000, help="customers' favorites streams held open")
    parser.add_argument(
        "--only",
        choices=[
            "bookings",
            "memory",
            "fanout",
            "heartbeats",
            "status",
            "visibility",
            "routing",
            "cluster",
            "capacity",
            "streams",
        ],
        help="run one phase and print its figures",
    )
    parser.add_argument("--targeted-offers", type=int, default=400, help="offers in the delivery-cost phase")
    parser.add_argument(
        "--capacity-steps",
        default="10000,25000,50000,100000",
        help="mechanics online at each step of the capacity phase (it writes bench/capacity.json)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--render", action="store_true", help="write docs/benchmarks.md from bench/results.json")
    args = parser.parse_args()
    if args.render:
        (ROOT / "docs" / "benchmarks.md").write_text(_render(json.loads((ROOT / "bench" / "results.json").read_text())))
        return
    if args.quick:
        args.connections, args.heartbeat_clients, args.seconds, args.windows, args.other_keys = 300, 50, 2, 100, 10_000
        args.streams = 500
    n = args.connections
    if args.only == "memory":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", n)
            server, shipped = ours.start(), ours.start_as_shipped()
            bare = spawn(["-m", "bench.peers.bare_ws", "{port}"])
            async with running(server, shipped, bare):
                found = {
                    "ours": await idle_memory(server, Kind.OURS, ours.urls([server], n)),
                    "ours_as_shipped": await idle_memory(shipped, Kind.OURS, ours.urls([shipped], n)),
                    "bare": await idle_memory(bare, Kind.BARE, bare_urls(bare, n)),
                }
            print(json.dumps(found, indent=2))
        return
    if args.only == "fanout":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", n)
            print(json.dumps(await fan_out_phase(ours, n), indent=2))
        return
    if args.only == "visibility":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", args.transitions)
            first, second = ours.start(), ours.start()
            async with running(first, second):
                print(json.dumps(await visibility_across(ours, first, second, args.transitions), indent=2))
        return
    if args.only == "routing":
        with tempfile.TemporaryDirectory() as workdir:
            print(json.dumps(await delivery_cost(workdir, args.targeted_offers), indent=2))
        return
    if args.only == "cluster":
        with tempfile.TemporaryDirectory() as workdir:
            print(json.dumps(await cluster_phase(workdir, n, args.windows, args.other_keys), indent=2))
        return
    if args.only == "heartbeats":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", args.heartbeat_clients)
            print(json.dumps(await heartbeat_phase(ours, redis.url, args.heartbeat_clients, args.seconds), indent=2))
        return
    if args.only == "status":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", 2)
            print(json.dumps(await status_phase(ours, args.seconds), indent=2))
        return
    if args.only == "capacity":
        found = await capacity_phase([int(step) for step in args.capacity_steps.split(",")])
        (ROOT / "bench" / "capacity.json").write_text(json.dumps(found, indent=2) + "\n")
        (ROOT / "docs" / "benchmarks.md").write_text(_render(json.loads((ROOT / "bench" / "results.json").read_text())))
        print(json.dumps(found, indent=2))
        return
    if args.only == "streams":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", WATCHED + 2)
            found = await streams_phase(ours, args.streams, args.seconds)
        # Kept beside the last full run's figures, dated: docs/benchmarks.md shows it with them.
        results = json.loads((ROOT / "bench" / "results.json").read_text())
        results["streams"] = {**found, "date": datetime.now(UTC).isoformat(timespec="seconds")}
        (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
        (ROOT / "docs" / "benchmarks.md").write_text(_render(results))
        print(json.dumps(found, indent=2))
        return
    if args.only == "bookings":
        with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
            print(json.dumps(await bookings_phase(redis.url, workdir, args.postgres, args.bookings), indent=2))
        return
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "connections": n,
    }
    steps = tqdm(total=12, desc="benchmarks")
    with EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as workdir:
        results["machine"]["redis"] = subprocess.run(
            [redis_binary(), "--version"], capture_output=True, text=True
        ).stdout.split()[2]
        ours = await prepare_ours(redis.url, f"sqlite:///{workdir}/bench.db", n)

        # 1-2 on one process each, ours beside the bare server
        memory: dict[str, Any] = {}
        server, bare = ours.start(), spawn(["-m", "bench.peers.bare_ws", "{port}"])
        async with running(ours.start_as_shipped()) as (shipped,):
            memory["ours_as_shipped"] = await idle_memory(shipped, Kind.OURS, ours.urls([shipped], n))
        async with running(server, bare):
            memory["ours"] = await idle_memory(server, Kind.OURS, ours.urls([server], n))
            memory["bare"] = await idle_memory(bare, Kind.BARE, bare_urls(bare, n))
            steps.update(1)
            fan = await fan_out_beside_bare(ours, server, bare, n)
        steps.update(1)

        peer = spawn(["-m", "bench.peers.socketio_peer", "{port}", redis.url])
        async with running(peer):
            memory["socketio"] = await idle_memory(peer, Kind.SOCKETIO, socketio_urls([peer], n))
            try:
                async with fanning_peer(peer, Kind.SOCKETIO, socketio_urls([peer], n)) as side:
                    (rounds,) = await fan_out(side)
                fan["socketio"] = summary(rounds)
            except TimeoutError:
                # A peer, not a target: when its Redis manager stalls ("Cannot publish to redis... retrying"),
                # say so and go on.
                fan["socketio"] = {"deliveries_per_s": "stalled", "p99_ms": "stalled"}
        steps.update(1)

        # 3. heartbeats, the three servers taking turns
        beats = await heartbeat_phase(ours, redis.url, args.heartbeat_clients, args.seconds)
        steps.update(1)

        # 2b. fan-out across two of our processes sharing Redis
        first, second = ours.start(), ours.start()
        async with running(first, second):
            fan["ours_two_processes"] = await fan_out_alone(ours, [first, second], n)
            results["visibility"] = await visibility_across(ours, first, second, args.transitions)
        steps.update(1)

        # 4. status endpoint vs the bare route, taking turns
        status = await status_phase(ours, args.seconds)
        steps.update(1)

        # 4b. the customers' favorites streams: latency, memory, and the status poll beside them
        results["streams"] = await streams_phase(ours, args.streams, args.seconds)
        steps.update(1)

        # 5. offer latency, favdispatch and the bare booking server, on SQLite and PostgreSQL
        results["offer_latency"] = await bookings_phase(redis.url, workdir, args.postgres, args.bookings)
        steps.update(1)

        # 6. fallback lateness, empty Redis then beside a million expiring keys
        fallback = await asyncio.to_thread(fallback_lateness, redis.url, args.windows, args.other_keys, as_shipped=True)
        fallback["other_keys"] = args.other_keys
        fallback["windows"] = args.windows
        steps.update(2)

        # 7. Redis cost per targeted offer as processes grow, routed or to every process
        results["delivery_cost"] = await delivery_cost(workdir, args.targeted_offers)
        steps.update(1)

        # 8. fan-out and fallback lateness on a three-primary Redis Cluster
        results["cluster"] = await cluster_phase(workdir, n, args.windows, args.other_keys)
        steps.update(1)
    steps.close()
    results.update(memory=memory, fan_out=fan, heartbeats=beats, status=status, fallback_lateness=fallback)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
    table = _render(results)
    (ROOT / "docs" / "benchmarks.md").write_text(table)
    print(table)


def _render(results: dict[str, Any]) -> str:
    """The report, with the capacity phase's last run where there is one (it runs on its own: `--only capacity`)."""
    capacity = ROOT / "bench" / "capacity.json"
    return render(results, json.loads(capacity.read_text()) if capacity.exists() else None)


if __name__ == "__main__":
    uvloop.run(main())
