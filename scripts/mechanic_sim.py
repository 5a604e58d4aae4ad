"""Simulate N mechanics' apps against a running server: heartbeats, acks, and a behaviour model.

    python scripts/mechanic_sim.py --mechanics 200 --accept 0.6 --decline 0.2 --delay-mean-ms 800 --duration 60

Mechanics are created through the admin API (tokens minted from JWT_SECRET, or the development secret that
`make run` uses). Each offer is accepted, declined or ignored (no ack, no answer) by chance, after an
exponentially distributed delay. A live summary is printed every second (with --json, only the final counts, as
one JSON object); the run stops after --duration and deletes the mechanics it created.
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
from collections import Counter

from tqdm import tqdm

from api.settings import load_settings
from scripts import cli
from scripts.simulation import Behaviour, Operator, SimulatedMechanic, connect_all


def _totals(mechanics: list[SimulatedMechanic], started: float) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for mechanic in mechanics:
        totals.update(mechanic.counts)
    return {
        "seconds": round(time.monotonic() - started, 1),
        "connected": totals["connected"] - totals["closed"],
        "offers": totals["offer"],
        "accepted": totals["accepted"],
        "declined": totals["sent_decline"],
        "refused": totals["error"],
        "revoked": totals["offer_revoked"],
    }


async def run(args: argparse.Namespace) -> int:
    operator = Operator(args.url, str(load_settings().jwt_secret))
    rng = random.Random(args.seed)
    behaviour = Behaviour(args.accept, args.decline, args.delay_mean_ms, args.delay_max_ms)
    ws_url = args.url.replace("http", "ws", 1) + "/ws/mechanic"
    ids: list[str] = []
    try:
        for i in tqdm(range(args.mechanics), desc="creating"):
            ids.append(await operator.create_mechanic(f"Sim {i}"))
        mechanics = [
            SimulatedMechanic(i, operator.mechanic_token(i), ws_url, behaviour, random.Random(rng.random()))
            for i in ids
        ]
        with tqdm(total=len(mechanics), desc="connecting") as progress:
            failed = await connect_all(mechanics, progress=progress)
        if failed:
            print(f"{failed} mechanics could not connect", file=sys.stderr)
        started = time.monotonic()
        while time.monotonic() - started < args.duration:
            await asyncio.sleep(1)
            if not args.json:
                tqdm.write(" ".join(f"{k}={v}" for k, v in _totals(mechanics, started).items()))
        await asyncio.gather(*(m.close() for m in mechanics))
        if args.json:
            print(json.dumps({**_totals(mechanics, started), "mechanics": len(ids), "failed_to_connect": failed}))
        return 1 if failed else 0
    finally:
        for mechanic_id in ids:
            await operator.delete_mechanic(mechanic_id)
        await operator.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (loopback only)")
    parser.add_argument("--mechanics", type=int, default=50)
    parser.add_argument("--accept", type=float, default=0.7, help="chance to accept an offer")
    parser.add_argument("--decline", type=float, default=0.1, help="chance to decline (the rest ignore)")
    parser.add_argument("--delay-mean-ms", type=float, default=500.0, help="mean reply delay (exponential)")
    parser.add_argument("--delay-max-ms", type=float, default=5000.0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run, then stop")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the final counts, as JSON")
    args = parser.parse_args()
    if not 0 <= args.accept + args.decline <= 1:
        parser.error("--accept plus --decline must be between 0 and 1")
    cli.run(run(args))


if __name__ == "__main__":
    main()
