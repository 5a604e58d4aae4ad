"""Presence in Redis: connect, heartbeat and release devices; read who is online and when they were last seen.

A mechanic is online while any device heartbeats. A heartbeat refreshes the online key's TTL and records
last_seen in a Redis hash, never the database. Heartbeats arriving within `HEARTBEAT_BATCH_S` of each other share
one call of the TOUCH script (one round trip, one script run for all of them), which is what lets one process
absorb tens of thousands a second. `flush_last_seen` persists the changed last_seen values in batches,
so last_seen survives going offline and a Redis restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from databases import Database
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from base.clock import from_ms, now_ms
from base.redis_client import RedisClient, is_cluster
from presence import scripts
from presence.config import PresenceConfig
from presence.keys import SHARDS, MechanicKeys, PresenceKeys
from presence.metrics import FLAPS, HEARTBEATS, OFFLINE_LAG
from presence.replica import LiveStatus, PresenceReplica, Transition

log = logging.getLogger(__name__)

ROUTE_TTLS = 3  # a route lasts this many presence TTLs after the last heartbeat

FLUSH_BATCH = 1000
# Rows per last_seen UPDATE. They travel as one JSON parameter of a statement compiled once, at about a microsecond
# a row; the CASE with a branch per row this replaced was compiled on the event loop at 45 µs a row, a quarter of a
# second of every flush for 5,000 mechanics online.
LAST_SEEN_ROWS = 1000
TOUCH_BATCH = 500  # devices per script call: bounds how long one call holds Redis (a few milliseconds)
HEARTBEAT_BATCH_S = 0.01
FLAP_WINDOW_MS = 60_000  # back online this soon after going offline: a flap


class PresenceTracker:
    def __init__(self, redis: RedisClient, config: PresenceConfig) -> None:
        self._redis = redis
        self._is_cluster = is_cluster(redis)
        self.config = config
        self.keys = PresenceKeys(config.key_prefix)
        self._ttl_ms = int(config.ttl_s * 1000)
        # Routes outlive presence: a socket whose heartbeats run late (a busy process, a slow Redis) still gets its
        # frames, and a dead process's route lapses on its own.
        self._route_ttl_ms = ROUTE_TTLS * self._ttl_ms
        self.replica = PresenceReplica(redis, self.keys)
        self._revived_hooks: list[Callable[[str, str], None]] = []
        self._touch = redis.register_script(scripts.TOUCH)
        self._release = redis.register_script(scripts.RELEASE)
        self._expired = redis.register_script(scripts.EXPIRED)
        self._pop_dirty = redis.register_script(scripts.POP_DIRTY)
        self._route = redis.register_script(scripts.ROUTE)
        self._pending_beats: dict[str, str] = {}  # connection id -> mechanic id
        self._beats_received = 0  # since the last flush, which adds them to the counter (one increment, not one each)
        self._beat_flush: asyncio.Task[None] | None = None
        # A release waits for heartbeats already on their way to Redis, or one landing after it would bring a
        # closed device back to life until its TTL ran out.
        self._beats_in_flight = asyncio.Lock()

    def _device_keys(self, mechanic_id: str) -> list[str]:
        return list(self.keys.of_mechanic(mechanic_id))

    async def track(self, mechanic_id: str, connection_id: str) -> bool:
        """Register a device. True when this made the mechanic go online.

        The replica learns it at once (a status read right after connecting says online), whatever the
        transition's trip through pub/sub takes.
        """
        now = now_ms()
        [flag] = await self._touch(
            keys=self._device_keys(mechanic_id), args=[*self._touch_args(now), mechanic_id, connection_id]
        )
        went_online = bool(flag)
        offline_since = self.replica.offline_since(mechanic_id)
        if went_online and offline_since is not None and now - offline_since < FLAP_WINDOW_MS:
            FLAPS.inc()
        if went_online or not self.replica.is_online(mechanic_id):
            self.replica.apply(Transition(mechanic_id=mechanic_id, is_online=True, at=now))
        return went_online

    def on_revived(self, hook: Callable[[str, str], None]) -> None:
        """Called with (mechanic id, connection id) when a heartbeat brings a lapsed device back online."""
        self._revived_hooks.append(hook)

    def heartbeat(self, mechanic_id: str, connection_id: str) -> None:
        """Refresh a device within HEARTBEAT_BATCH_S, in one script call with every other heartbeat meanwhile."""
        self._pending_beats[connection_id] = mechanic_id
        self._beats_received += 1
        if self._beat_flush is None:
            self._beat_flush = asyncio.create_task(self._flush_heartbeats())

    async def _flush_heartbeats(self) -> None:
        await asyncio.sleep(HEARTBEAT_BATCH_S)
        self._beat_flush = None
        HEARTBEATS.inc(self._beats_received)
        self._beats_received = 0
        beats: dict[str, str] = {}
        try:
            async with self._beats_in_flight:
                # Taken under the lock: a device released meanwhile has left `_pending_beats` already, so no beat
                # can bring it back after its release.
                beats, self._pending_beats = self._pending_beats, {}
                now = now_ms()
                went_online = await self._touch_all(beats, now) if beats else []
        except (RedisError, OSError) as error:
            # Presence lapses only if heartbeats keep failing for a whole TTL.
            log.warning("dropped %d heartbeats: Redis unavailable (%s)", len(beats), error)
            return
        for connection_id, mechanic_id in went_online:
            # The device's presence had lapsed while its socket stayed open: it is back, and whatever was
            # offered meanwhile must reach it.
            self.replica.apply(Transition(mechanic_id=mechanic_id, is_online=True, at=now))
            for hook in self._revived_hooks:
                hook(mechanic_id, connection_id)

    def _touch_args(self, now: int) -> list[Any]:
        return [now, self._ttl_ms, self._route_ttl_ms, self.keys.transitions]

    async def _touch_all(self, beats: dict[str, str], now: int) -> list[tuple[str, str]]:
        """Refresh every (connection id, mechanic id) in `beats`; returns those whose mechanic this brought online.

        One script call refreshes up to TOUCH_BATCH devices. On a cluster a call's keys must share a slot, so the
        devices go in one call per shard.
        """
        groups: dict[str, list[tuple[str, str, MechanicKeys]]] = {}
        for connection_id, mechanic_id in beats.items():
            device_keys = self.keys.of_mechanic(mechanic_id)
            group = device_keys.last_seen if self._is_cluster else ""  # a shard's keys share its slot
            groups.setdefault(group, []).append((connection_id, mechanic_id, device_keys))
        batches = [
            devices[i : i + TOUCH_BATCH] for devices in groups.values() for i in range(0, len(devices), TOUCH_BATCH)
        ]
        calls = [
            (
                [key for _, _, device_keys in batch for key in device_keys],
                [
                    *self._touch_args(now),
                    *(part for connection_id, mechanic_id, _ in batch for part in (mechanic_id, connection_id)),
                ],
            )
            for batch in batches
        ]
        replies = await self._run_many(self._touch, calls)
        return [
            (connection_id, mechanic_id)
            for batch, flags in zip(batches, replies, strict=True)
            for (connection_id, mechanic_id, _), went_online in zip(batch, flags, strict=True)
            if went_online
        ]

    async def _run_many(self, script: AsyncScript, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """One pipeline of `EVALSHA`s (on a cluster, one per node, sent together). redis-py would send `SCRIPT
        EXISTS` before every pipeline that runs a `Script`, a second round trip; instead the script is loaded
        once, and again where a server lost it (a restart, a replica promoted by a failover)."""
        for attempt in (1, 2):
            pipe: Pipeline | ClusterPipeline
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    # Not `pipe.evalsha`, which redis-py refuses in a cluster pipeline: each call's keys share one
                    # slot, and the command goes to that slot's node like any other.
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self._redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def release_silent(self, mechanic_id: str, connection_id: str, silent_s: float) -> None:
        """A device this server closed for silence (`silent_s` since its last frame) stops counting at once."""
        if await self.untrack(mechanic_id, connection_id):
            OFFLINE_LAG.labels("silent").observe(silent_s)

    async def untrack(self, mechanic_id: str, connection_id: str) -> bool:
        """A device closed cleanly. True when it was the last one, so the mechanic is now offline."""
        self._pending_beats.pop(connection_id, None)
        now = now_ms()
        async with self._beats_in_flight:
            went_offline = bool(
                await self._release(
                    keys=self._device_keys(mechanic_id), args=[mechanic_id, connection_id, now, self.keys.transitions]
                )
            )
        if went_offline:
            self.replica.apply(Transition(mechanic_id=mechanic_id, is_online=False, at=now))
        return went_offline

    async def publish_to_devices(self, mechanic_ids: tuple[str, ...], channel_prefix: str, message: bytes) -> int:
        """Publish `message` once to `{channel_prefix}{process}` for each process holding a socket of these
        mechanics (the routes their heartbeats keep); returns how many processes it reached.

        On one Redis a script does it in one round trip. On a cluster the routes lie in many slots and each
        process's channel is a shard channel of its own node: the routes are read (one pipeline) and the message
        published with `SPUBLISH` (another), so it travels to one shard, never over the whole cluster bus."""
        keys = [self.keys.routes(m) for m in mechanic_ids]
        now = now_ms()
        if not self._is_cluster:
            reached: int = await self._route(keys=keys, args=[now, channel_prefix, message])
            return reached
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            tables: list[dict[str, str]] = await pipe.execute()
        processes = {process for table in tables for process, until in table.items() if int(until) > now}
        if processes:
            async with self._redis.pipeline(transaction=False) as pipe:
                for process in processes:
                    pipe.spublish(channel_prefix + process, message)
                await pipe.execute()
        return len(processes)

    async def forget(self, mechanic_id: str) -> None:
        """Drop every device of a deleted mechanic at once."""
        keys = self.keys.of_mechanic(mechanic_id)
        async with self._redis.pipeline(transaction=True) as pipe:  # one slot: the keys share the shard's tag
            pipe.delete(keys.online, keys.devices, keys.routes)
            pipe.zrem(keys.online_index, mechanic_id)
            await pipe.execute()
        self.replica.forget(mechanic_id)

    def online_ids(self) -> list[str]:
        """Who is online now, across every server (from this process's replica)."""
        return self.replica.online_ids()

    async def on_key_expired(self, key: str) -> None:
        """Called for every expired key; announces a crashed mechanic's offline transition exactly once."""
        mechanic_id = self.keys.mechanic_of_online(key)
        if mechanic_id is None:
            return
        keys = self.keys.of_mechanic(mechanic_id)
        now = now_ms()
        last_frame = await self._expired(
            keys=[keys.online, keys.devices, keys.online_index, keys.last_seen],
            args=[mechanic_id, now, self.keys.transitions],
        )
        if last_frame:
            OFFLINE_LAG.labels("expired").observe(max(0, now - int(last_frame)) / 1000)

    def statuses(self, mechanic_ids: list[str]) -> dict[str, LiveStatus]:
        """Live status of many mechanics, from memory."""
        return {mechanic_id: self.replica.status(mechanic_id) for mechanic_id in mechanic_ids}

    def is_online(self, mechanic_id: str) -> bool:
        return self.replica.is_online(mechanic_id)

    async def any_online(self, mechanic_ids: tuple[str, ...]) -> bool:
        """Whether any of these mechanics is online: the replica's answer, confirmed in Redis when it is no. The
        replica hears a mechanic come online one pub/sub trip late (a rebuild later, if the message was lost),
        and a booking routed on that lag would wait out its window with its favorite connected. Redis
        unreachable: the replica's answer stands."""
        if any(self.replica.is_online(m) for m in mechanic_ids):
            return True
        if not mechanic_ids:
            return False
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for mechanic_id in mechanic_ids:
                    pipe.exists(self.keys.online(mechanic_id))
                found: list[int] = await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("could not confirm presence in Redis (%s); routing on this process's replica", error)
            return False
        return any(found)

    async def flush_last_seen(self, database: Database) -> int:
        """Persist every last_seen that changed since the previous flush; returns how many were written.

        The popped ids and epoch milliseconds go to the database as they came from Redis, as [id, ms] pairs, and
        the database turns milliseconds into its time: a flush touches every mechanic heard in the last seconds,
        and converting each in Python (a datetime, then text) was a tenth of a process's CPU at 10,000 sockets."""
        written = 0
        shards = list(range(SHARDS))
        while shards:
            calls = [([self.keys.last_seen_dirty(s), self.keys.last_seen(s)], [FLUSH_BATCH]) for s in shards]
            popped = await self._run_many(self._pop_dirty, calls)
            ids = [mechanic_id for flat in popped for mechanic_id in flat[0::2]]
            seen_ms = [ms for flat in popped for ms in flat[1::2]]  # None where Redis no longer had it
            for start in range(0, len(ids), LAST_SEEN_ROWS):
                end = start + LAST_SEEN_ROWS
                await database.execute(_advance_last_seen(ids[start:end], seen_ms[start:end], database.url.dialect))
            written += len(seen_ms) - seen_ms.count(None)
            # A shard that gave a whole batch may hold more.
            shards = [s for s, flat in zip(shards, popped, strict=True) if len(flat) >= 2 * FLUSH_BATCH]
        return written


# last_seen_at only moves forward, so flushes from several processes may interleave. SQLite keeps a time as text in
# SQLAlchemy's format (UTC, microseconds), which the milliseconds are written as, so that text compares as time.
_MATCHED_AND_NEWER = "mechanics.id = seen.id AND (mechanics.last_seen_at IS NULL OR mechanics.last_seen_at < seen.at)"
_ADVANCE_LAST_SEEN = {
    "sqlite": sa.text(
        "UPDATE mechanics SET last_seen_at = seen.at FROM ("
        " SELECT json_extract(value, '$[0]') AS id,"
        " strftime('%Y-%m-%d %H:%M:%S', CAST(json_extract(value, '$[1]') AS INTEGER) / 1000, 'unixepoch')"
        " || printf('.%06d', CAST(json_extract(value, '$[1]') AS INTEGER) % 1000 * 1000) AS at"
        " FROM json_each(:seen) WHERE json_extract(value, '$[1]') IS NOT NULL"
        f") AS seen WHERE {_MATCHED_AND_NEWER}"
    ),
    "postgresql": sa.text(
        "UPDATE mechanics SET last_seen_at = seen.at FROM ("
        " SELECT CAST(pair ->> 0 AS uuid) AS id, to_timestamp(CAST(pair ->> 1 AS bigint) / 1000.0) AS at"
        " FROM json_array_elements(CAST(:seen AS json)) AS pair WHERE pair ->> 1 IS NOT NULL"
        f") AS seen WHERE {_MATCHED_AND_NEWER}"
    ),
}


def _advance_last_seen(ids: list[str], seen_ms: list[str | None], dialect: str) -> sa.TextClause:
    """One UPDATE for a whole batch, of one shape whatever the batch (compiled once per process): a JSON array of
    [id, ms] pairs, one array walked once (two arrays joined by position would be compared pair by pair)."""
    return _ADVANCE_LAST_SEEN[dialect].bindparams(seen=json.dumps(list(zip(ids, seen_ms, strict=True))))


def last_seen_of(live: LiveStatus, persisted: datetime | None) -> datetime | None:
    """Redis knows the freshest last_seen; after a Redis restart the database's copy stands in."""
    if live.last_seen_ms is not None:
        return from_ms(live.last_seen_ms)
    return persisted
