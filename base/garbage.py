"""The cyclic garbage collector, paced for a process that holds thousands of long-lived sockets.

CPython runs a full collection whenever the objects that survived into its oldest generation since the last full
one reach a quarter of those that were there. A socket's objects live for hours, and each heartbeat leaves a few
that live until the next one (the future its read waits on), so heartbeating sockets keep causing full passes
(a client process of the capacity benchmark, holding the same kind of objects unpaced, ran one every 35 s, each
stopping it for 1.2 to 1.9 s). Each pass traverses every socket's objects and serves none of them meanwhile: 0.8
to 0.9 s of CPU for a worker with 10,000 sockets (timed with `gc.callbacks` in `make bench --only capacity`).

So every FREEZE_EVERY_S what survived is frozen (`gc.freeze`, which splices the generations onto the permanent
one in constant time), and a full collection traverses only what is younger (frozen every 10 s instead, a worker
taking sockets at 300 a second still ran passes of 350 ms of CPU). Reference counting still frees frozen objects;
what it cannot free is a cycle among them (a closed connection's protocol objects refer to each other), which
waits for the thorough pass about every THOROUGH_EVERY_S: unfreeze, collect everything once, freeze again. That
pass is as long as the full collection it replaces, paid every fifteen minutes instead of every half minute, at a
moment drawn at random so that the workers of one machine do not all stop at once; what waits for it is the cycles
of the sockets closed within those minutes.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time

FREEZE_EVERY_S = 1.0
THOROUGH_EVERY_S = 900.0


def freeze_survivors() -> None:
    """Move every object the collector tracks out of its generations: no collection traverses them again until
    `collect_thoroughly`."""
    gc.freeze()


def collect_thoroughly() -> int:
    """Put the frozen objects back, collect every generation (cycles among formerly frozen objects included), and
    freeze the survivors; returns how many unreachable objects were found."""
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found


async def pace_forever(freeze_every_s: float = FREEZE_EVERY_S, thorough_every_s: float = THOROUGH_EVERY_S) -> None:
    """Freeze the survivors every `freeze_every_s`, and collect thoroughly every `thorough_every_s` on average
    (between half and one and a half times it)."""

    def next_thorough() -> float:
        return time.monotonic() + thorough_every_s * random.uniform(0.5, 1.5)

    thorough_at = next_thorough()
    while True:
        await asyncio.sleep(freeze_every_s)
        if time.monotonic() >= thorough_at:
            collect_thoroughly()
            thorough_at = next_thorough()
        else:
            freeze_survivors()
