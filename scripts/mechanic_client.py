"""A mechanic app on the command line: connects, heartbeats, acks every offer, and prints what arrives.

    python scripts/mechanic_client.py --token <mechanic JWT> [--url ws://127.0.0.1:8000/ws/mechanic]
                                      [--auto accept|decline|none]

Without --url it connects to $BASE (the server's http(s) address, as in the README's tour; default
http://127.0.0.1:$PORT or :8000).

With `--auto accept` it accepts every offer it receives (the first accept wins), with `decline` it declines.
On every connect the server first tells it its state (`assigned` sessions, then open offers); like an app, it
replaces what it knew with that. The token travels as the `bearer.<token>` subprotocol, never in the URL.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import os

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from delivery.close_codes import CloseCode, meaning
from scripts import cli


async def _heartbeat(ws: ClientConnection, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await ws.send(json.dumps({"type": "heartbeat"}))


async def run(url: str, token: str, auto: str) -> int:
    async with connect(url, subprotocols=[Subprotocol(f"bearer.{token}")], compression=None) as ws:
        heartbeats: asyncio.Task[None] | None = None
        sessions: set[str] = set()
        try:
            async for frame in ws:
                message = json.loads(frame)
                print(json.dumps(message), flush=True)
                kind = message.get("type")
                if kind == "welcome":
                    sessions.clear()
                    heartbeats = asyncio.create_task(_heartbeat(ws, float(message["heartbeat_interval_s"])))
                elif kind in ("assigned", "accepted"):
                    sessions.add(message["request_id"])
                    print(f"my sessions: {sorted(sessions)}", file=sys.stderr)
                elif kind == "offer":
                    await ws.send(json.dumps({"type": "ack", "offer_id": message["offer_id"]}))
                    if auto in ("accept", "decline"):
                        await ws.send(json.dumps({"type": auto, "request_id": message["request_id"]}))
        except ConnectionClosed:
            pass
        finally:
            if heartbeats is not None:
                heartbeats.cancel()
        code = ws.close_code
        print(f"closed ({code}): {meaning(code)}", file=sys.stderr)
        return 0 if code in (CloseCode.NORMAL, CloseCode.GOING_AWAY) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token", required=True)
    base = os.environ.get("BASE") or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    parser.add_argument("--url", default=base.rstrip("/").replace("http", "ws", 1) + "/ws/mechanic")
    parser.add_argument("--auto", choices=["accept", "decline", "none"], default="none")
    args = parser.parse_args()
    cli.run(run(args.url, args.token, args.auto))


if __name__ == "__main__":
    main()
