"""The benchmark clients' own garbage collector, kept out of what they time.

A client holding thousands of sockets or streams runs full collections of hundreds of milliseconds (timed with
`gc.callbacks`: 1.5 s once, after 5,000 clients closed; 200–360 ms in the streams phase's client). One landing
inside a timed trial would be counted as the server's latency.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def settle_garbage() -> None:
    """Collect what this process left so far and freeze the survivors, before a phase timed here: frozen objects
    are never traversed again."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def uncollected() -> Iterator[None]:
    """No collection in this process while it times the server (a bounded run: what it allocates meanwhile is freed
    by reference counting, or at the next collection after)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
