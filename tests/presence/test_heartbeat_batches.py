"""Heartbeats share script calls and last_seen shares statements: one flush refreshes every device it holds, and
one last_seen flush persists every change, however many calls or statements each takes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, from_ms, now_ms, utc_now
from base.database import open_database
from base.redis_client import RedisClient, connect
from base.tables import mechanics
from presence import tracker as tracker_module
from presence.config import PresenceConfig
from presence.keys import PresenceKeys, shard_of
from presence.tracker import HEARTBEAT_BATCH_S, PresenceTracker

TTL_S = 30.0


async def test_one_flush_refreshes_every_device_and_reports_each_revival_once(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty devices over many shards, seven per script call: every online key, device and last_seen is
    refreshed, and exactly the mechanics whose presence had lapsed are reported back online."""
    monkeypatch.setattr(tracker_module, "TOUCH_BATCH", 7)
    redis = connect(redis_url, max_connections=4)
    tracker = PresenceTracker(redis, PresenceConfig(key_prefix=key_prefix, ttl_s=TTL_S))
    keys = PresenceKeys(key_prefix)
    devices = {f"proc1.{n}": str(uuid.uuid4()) for n in range(40)}
    assert len({shard_of(m) for m in devices.values()}) > 10
    try:
        for connection_id, mechanic_id in devices.items():
            await tracker.track(mechanic_id, connection_id)
        lapsed = dict(list(devices.items())[:5])
        for mechanic_id in lapsed.values():
            await redis.delete(keys.online(mechanic_id))
        revived: list[tuple[str, str]] = []
        tracker.on_revived(lambda mechanic_id, connection_id: revived.append((connection_id, mechanic_id)))
        await asyncio.sleep(0.01)
        before = now_ms()

        for connection_id, mechanic_id in devices.items():
            tracker.heartbeat(mechanic_id, connection_id)
        await asyncio.sleep(HEARTBEAT_BATCH_S + 0.2)

        assert sorted(revived) == sorted(lapsed.items())
        for connection_id, mechanic_id in devices.items():
            device_keys = keys.of_mechanic(mechanic_id)
            assert int(await redis.get(device_keys.online)) >= before
            assert await redis.pttl(device_keys.online) > (TTL_S - 5) * 1000
            assert await redis.zscore(device_keys.devices, connection_id) >= before + TTL_S * 1000
            assert int(await redis.hget(device_keys.last_seen, mechanic_id)) >= before
            assert await redis.hget(device_keys.routes, "proc1") is not None
    finally:
        found = [k async for k in redis.scan_iter(match=f"{key_prefix}:*", count=1000)]
        for key in found:
            await redis.delete(key)
        await redis.aclose()


@asynccontextmanager
async def flushing(
    redis_url: str, key_prefix: str, database_url: str
) -> AsyncIterator[tuple[PresenceTracker, RedisClient, Database]]:
    """A tracker, its Redis and the database its flushes write to; the run's Redis keys are removed afterwards."""
    database = open_database(database_url)
    await database.connect()
    redis = connect(redis_url, max_connections=4)
    try:
        yield PresenceTracker(redis, PresenceConfig(key_prefix=key_prefix, ttl_s=TTL_S)), redis, database
    finally:
        found = [k async for k in redis.scan_iter(match=f"{key_prefix}:*", count=1000)]
        for key in found:
            await redis.delete(key)
        await redis.aclose()
        await database.disconnect()


async def seen_in_redis(redis: RedisClient, tracker: PresenceTracker, ids: Iterable[str]) -> dict[str, datetime]:
    return {m: from_ms(int(await redis.hget(tracker.keys.of_mechanic(m).last_seen, m))) for m in ids}


async def stored_last_seen(database: Database, ids: Iterable[str]) -> dict[str, datetime]:
    rows = await database.fetch_all(
        sa.select(mechanics.c.id, mechanics.c.last_seen_at).where(mechanics.c.id.in_(list(ids)))
    )
    return {str(row.id): as_utc(row.last_seen_at) for row in rows}


async def test_one_last_seen_flush_persists_every_change_in_several_statements(
    redis_url: str, key_prefix: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty mechanics seen, seven rows per UPDATE: every last_seen reaches the database, and a second flush
    finds nothing left to write."""
    monkeypatch.setattr(tracker_module, "LAST_SEEN_ROWS", 7)
    ids = [str(uuid.uuid4()) for _ in range(30)]
    async with flushing(redis_url, key_prefix, database_url) as (tracker, redis, database):
        rows = [
            {"id": i, "name": f"M{n}", "provider_type": "independent", "created_at": utc_now()}
            for n, i in enumerate(ids)
        ]
        await database.execute(sa.insert(mechanics).values(rows))
        for n, mechanic_id in enumerate(ids):
            await tracker.track(mechanic_id, f"proc1.{n}")
        seen = await seen_in_redis(redis, tracker, ids)

        assert await tracker.flush_last_seen(database) == len(ids)
        assert await tracker.flush_last_seen(database) == 0

        assert await stored_last_seen(database, ids) == seen


async def test_a_last_seen_flush_never_moves_a_stored_last_seen_back(
    redis_url: str, key_prefix: str, database_url: str
) -> None:
    """Another process may have flushed a newer last_seen first: a flush only ever moves last_seen forward, and
    fills in a mechanic never seen before."""
    newer_stored, older_stored, never_stored = (str(uuid.uuid4()) for _ in range(3))
    now = utc_now()
    stored = {newer_stored: now + timedelta(hours=1), older_stored: now - timedelta(hours=1), never_stored: None}
    async with flushing(redis_url, key_prefix, database_url) as (tracker, redis, database):
        await database.execute(
            sa.insert(mechanics).values(
                [
                    {"id": i, "name": "M", "provider_type": "independent", "created_at": now, "last_seen_at": at}
                    for i, at in stored.items()
                ]
            )
        )
        for n, mechanic_id in enumerate(stored):
            await tracker.track(mechanic_id, f"proc1.{n}")
        seen = await seen_in_redis(redis, tracker, stored)

        assert await tracker.flush_last_seen(database) == len(stored)

        assert await stored_last_seen(database, stored) == {
            newer_stored: stored[newer_stored],
            older_stored: seen[older_stored],
            never_stored: seen[never_stored],
        }
