"""A process's replica hears another process's devices come online one pub/sub trip late, and a rebuild may read
Redis before a transition it then overwrites. Neither may route a booking as if its favorite were away: CI saw a
priority booking made a notify & wait, its favorite connected on another process and never offered it."""

from __future__ import annotations

import asyncio
import uuid

from base.clock import now_ms
from base.redis_client import connect
from presence.config import PresenceConfig
from presence.keys import SHARDS
from presence.replica import Transition
from presence.tracker import PresenceTracker

TTL_S = 30.0


async def test_a_transition_heard_during_a_rebuild_outlives_its_older_snapshot(redis_url: str, key_prefix: str) -> None:
    redis = connect(redis_url, max_connections=4)
    replica = PresenceTracker(redis, PresenceConfig(key_prefix=key_prefix, ttl_s=TTL_S)).replica
    sam, ana = str(uuid.uuid4()), str(uuid.uuid4())
    replica.apply(Transition(mechanic_id=ana, is_online=True, at=1))
    try:
        rebuilding = asyncio.ensure_future(replica.rebuild())
        await asyncio.sleep(0)  # the rebuild's read is in flight: Redis has neither of them online
        replica.apply(Transition(mechanic_id=sam, is_online=True, at=2))
        await rebuilding
        assert replica.is_online(sam)  # heard after the snapshot was read: kept
        assert not replica.is_online(ana)  # not heard meanwhile: Redis's word stands
        await replica.rebuild()
        assert not replica.is_online(sam)  # the next rebuild reads Redis as it is (Sam was never tracked there)
    finally:
        await redis.aclose()


async def test_a_process_whose_replica_never_heard_the_favorite_confirms_in_redis(
    redis_url: str, key_prefix: str
) -> None:
    redis = connect(redis_url, max_connections=4)
    config = PresenceConfig(key_prefix=key_prefix, ttl_s=TTL_S)
    holding, booking = PresenceTracker(redis, config), PresenceTracker(redis, config)
    sam, ana = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await holding.track(sam, "proc1.a")
        assert not booking.is_online(sam)  # its replica has not heard the transition
        assert await booking.any_online((ana, sam))
        assert not await booking.any_online((ana,))
        await holding.untrack(sam, "proc1.a")
        assert not await booking.any_online((sam,))
    finally:
        await redis.aclose()


async def test_two_reads_in_flight_each_keep_what_was_heard_during_their_own(redis_url: str, key_prefix: str) -> None:
    """A rebuild (slow here: it reads every last_seen, and there are many) and a reconcile in flight together;
    the reconcile ends first, a transition is heard, then the rebuild ends. Each read drops its own record of what
    was heard meanwhile: when one took the other's, the rebuild raised and the replica's task crashed."""
    redis = connect(redis_url, max_connections=4)
    tracker = PresenceTracker(redis, PresenceConfig(key_prefix=key_prefix, ttl_s=TTL_S))
    replica, hashes = tracker.replica, [tracker.keys.last_seen(shard) for shard in range(SHARDS)]
    sam = str(uuid.uuid4())
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for key in hashes:
                pipe.hset(key, mapping={str(i): i for i in range(5000)})
            await pipe.execute()
        rebuilding = asyncio.ensure_future(replica.rebuild())
        await asyncio.sleep(0)  # its read is in flight
        await replica.reconcile()  # a few small replies, parsed long before the rebuild's 320,000 fields
        replica.apply(Transition(mechanic_id=sam, is_online=True, at=now_ms()))
        await rebuilding
        assert replica.is_online(sam)  # heard while the rebuild's read was in flight: kept
    finally:
        await redis.delete(*hashes)
        await redis.aclose()
