"""The seed's scenario under load: concurrent "Book Again" bookings, favorites online and offline.

    python scripts/loadtest.py [--bookings 100] [--mechanics 30] [--offline-share 0.3] [--url URL ...]

Creates mechanics through the admin API; most are favorites, some of them stay offline (their customers choose
"Find Available Mechanic Now"), some online favorites decline (an instant fallback), and helper mechanics take
the broadcasts. Every booking is made at once. At the end it checks that each booking was accepted exactly once
(status, event log, and `accepted` frames on the sockets) and none was lost, prints latency percentiles, and
exits non-zero on any lost or double assignment. Several --url values spread sockets and bookings over several
server processes. With --json the figures are one JSON object on stdout. The mechanics it created are deleted at
the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import datetime

from tqdm import tqdm

from api.settings import load_settings
from base.stats import percentile
from scripts import cli
from scripts.simulation import Behaviour, Operator, SimulatedMechanic, connect_all


def percentiles(values: list[float]) -> str:
    if not values:
        return "n=0"
    p50, p90, p99 = (percentile(values, q) or 0.0 for q in (0.5, 0.9, 0.99))
    return f"n={len(values)} p50={p50:.1f} ms p90={p90:.1f} ms p99={p99:.1f} ms max={max(values):.1f} ms"


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    secret = str(load_settings().jwt_secret)
    operators = [Operator(url, secret) for url in args.url]
    admin = operators[0]
    try:
        return await _scenario(args, rng, operators, admin)
    finally:
        for operator in operators:
            await operator.aclose()


async def _scenario(args: argparse.Namespace, rng: random.Random, operators: list[Operator], admin: Operator) -> int:
    ids: list[str] = []
    try:
        for i in tqdm(range(args.mechanics), desc="creating mechanics"):
            ids.append(await admin.create_mechanic(f"Load {i}"))
        return await _bookings(args, rng, operators, admin, ids)
    finally:
        for mechanic_id in ids:
            await admin.delete_mechanic(mechanic_id)


async def _bookings(
    args: argparse.Namespace, rng: random.Random, operators: list[Operator], admin: Operator, ids: list[str]
) -> int:
    favorites_count = max(1, int(args.mechanics * 0.7))
    favorites, helpers = ids[:favorites_count], ids[favorites_count:]
    offline = set(rng.sample(favorites, int(len(favorites) * args.offline_share)))
    decliners = set(rng.sample([f for f in favorites if f not in offline], int(len(favorites) * args.decline_share)))
    mechanics: list[SimulatedMechanic] = []
    for n, mechanic_id in enumerate(ids):
        if mechanic_id in offline:
            continue
        behaviour = (
            Behaviour(accept=0.0, decline=1.0)
            if mechanic_id in decliners
            else Behaviour(accept=1.0, delay_mean_ms=args.delay_mean_ms, delay_max_ms=args.delay_mean_ms * 5)
        )
        ws_url = args.url[n % len(args.url)].replace("http", "ws", 1) + "/ws/mechanic"
        mechanics.append(
            SimulatedMechanic(
                mechanic_id, admin.mechanic_token(mechanic_id), ws_url, behaviour, random.Random(rng.random())
            )
        )
    with tqdm(total=len(mechanics), desc="connecting mechanics") as progress:
        failed = await connect_all(mechanics, progress=progress)
    if failed:
        print(f"FAIL: {failed} mechanics could not connect", file=sys.stderr)
        return 2

    async def book(i: int) -> tuple[str, str, float, float]:
        favorite = favorites[i % len(favorites)]
        routing = "broadcast" if favorite in offline else "priority"
        operator = operators[i % len(operators)]
        customer = operator.customer_headers(str(uuid.uuid4()), f"Customer {i}")
        body = {"session_type": "video", "plan_code": "standard", "routing": routing, "preferred_mechanic_id": favorite}
        sent = time.time()
        response = await operator.http.post("/api/session-requests", json=body, headers=customer)
        response.raise_for_status()
        return str(response.json()["id"]), favorite if routing == "priority" else "", sent, time.time()

    started = time.monotonic()
    booked = await asyncio.gather(*(book(i) for i in range(args.bookings)))
    pending = {request_id for request_id, *_ in booked}
    with tqdm(total=len(pending), desc="waiting for accepts") as progress:
        while pending and time.monotonic() - started < args.timeout:
            await asyncio.sleep(0.5)
            for request_id in list(pending):
                if (await admin.request(request_id))["status"] == "accepted":
                    pending.discard(request_id)
                    progress.update(1)
    await asyncio.sleep(0.5)  # let the last `accepted` frames land

    problems = []
    frames: Counter[str] = Counter(r for m in mechanics for r in m.won)
    accept_ms, offer_ms = [], []
    for request_id, favorite, sent, _returned in booked:
        current = await admin.request(request_id)
        accepts = [e for e in await admin.events(request_id) if e["kind"] == "accepted"]
        if current["status"] != "accepted":
            problems.append(f"lost: {request_id} is {current['status']}/{current['phase']}")
        elif len(accepts) != 1 or frames[request_id] < 1:
            problems.append(
                f"double or missing accept: {request_id} accepts={len(accepts)} frames={frames[request_id]}"
            )
        elif len({m.mechanic_id for m in mechanics if request_id in m.won}) != 1:
            problems.append(f"two mechanics were told they won {request_id}")
        else:
            accepted_at = datetime.fromisoformat(current["accepted_at"].replace("Z", "+00:00")).timestamp()
            accept_ms.append((accepted_at - sent) * 1000)
        if favorite:
            holder = next((m for m in mechanics if m.mechanic_id == favorite), None)
            if holder is not None and request_id in holder.first_offer_at:
                offer_ms.append((holder.first_offer_at[request_id] - sent) * 1000)
    await asyncio.gather(*(m.close() for m in mechanics))

    if args.json:
        print(
            json.dumps(
                {
                    "bookings": args.bookings,
                    "mechanics": args.mechanics,
                    "offline_favorites": len(offline),
                    "declining_favorites": len(decliners),
                    "helpers": len(helpers),
                    "servers": len(args.url),
                    "offer_latency_ms": _figures(offer_ms),
                    "time_to_accept_ms": _figures(accept_ms),
                    "problems": problems,
                    "ok": not problems,
                }
            )
        )
        return 1 if problems else 0
    print(
        f"bookings: {args.bookings}  mechanics: {args.mechanics} ({len(offline)} offline favorites, "
        f"{len(decliners)} declining favorites, {len(helpers)} helpers)  servers: {len(args.url)}"
    )
    print(f"offer latency (booking sent -> priority offer on the favorite's socket): {percentiles(offer_ms)}")
    print(f"time to accept (booking sent -> accepted): {percentiles(accept_ms)}")
    if problems:
        print(f"FAIL: {len(problems)} problems", file=sys.stderr)
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"OK: every one of {args.bookings} bookings accepted exactly once, none lost")
    return 0


def _figures(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "n": len(values),
        **{f"p{round(q * 100)}": round(percentile(values, q) or 0.0, 1) for q in (0.5, 0.9, 0.99)},
        "max": round(max(values), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", help="server URL (repeat for several processes; loopback only)")
    parser.add_argument("--bookings", type=int, default=100)
    parser.add_argument("--mechanics", type=int, default=30)
    parser.add_argument("--offline-share", type=float, default=0.3, help="share of favorites that stay offline")
    parser.add_argument("--decline-share", type=float, default=0.1, help="share of favorites that decline")
    parser.add_argument("--delay-mean-ms", type=float, default=300.0, help="mean accept delay")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting after this many seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    args.url = args.url or ["http://127.0.0.1:8000"]
    cli.run(run(args))


if __name__ == "__main__":
    main()
