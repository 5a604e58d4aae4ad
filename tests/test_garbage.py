"""The collector's pacing: survivors are frozen out of the full collections, and a cycle that forms among frozen
objects (a closed connection's) is still freed, by the thorough pass."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest

from base.garbage import collect_thoroughly, freeze_survivors, pace_forever


class Node:
    """A stand-in for a connection's protocol object: it refers to its peer, which refers back."""

    peer: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the suite's objects go back to the ordinary generations


def test_a_cycle_frozen_while_alive_survives_full_collections_and_goes_at_the_thorough_pass() -> None:
    first, second = Node(), Node()
    first.peer, second.peer = second, first
    cycle = weakref.ref(first)
    freeze_survivors()
    del first, second  # the cycle is garbage now, but frozen

    gc.collect()
    assert cycle() is not None, "a full collection traversed a frozen object"
    assert gc.get_freeze_count() > 0

    assert collect_thoroughly() >= 2
    assert cycle() is None
    assert gc.get_freeze_count() > 0, "the thorough pass's survivors are frozen again"


async def test_the_pacer_freezes_between_thorough_passes_and_frees_a_frozen_cycle_at_one() -> None:
    first, second = Node(), Node()
    first.peer, second.peer = second, first
    cycle = weakref.ref(first)
    gc.unfreeze()
    pacer = asyncio.create_task(pace_forever(freeze_every_s=0.01, thorough_every_s=0.3))
    try:
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
        del first, second
        gc.collect()
        assert cycle() is not None, "frozen by the pacer, the cycle waits for the thorough pass"
        for _ in range(100):
            if cycle() is None:
                break
            await asyncio.sleep(0.01)
        assert cycle() is None
    finally:
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer
