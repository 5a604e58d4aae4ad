"""Pub/sub for a process: what it publishes, and one connection per Redis node it listens on.

Handlers are registered before `run()`, in three kinds:
- `subscribe`: a channel published with `publish` (or, for a process's own delivery channel, by the presence
  floor). On a cluster it is a shard channel (`SPUBLISH`/`SSUBSCRIBE`), heard on the primary owning its slot: a
  message touches that one shard, never the whole cluster bus.
- `subscribe_scripted`: a channel a Lua script publishes to (presence transitions). A script may only touch its
  keys' slot, so it uses classic `PUBLISH`, which the cluster bus carries to every node: one node is listened to.
- `subscribe_expired`: keyevent `expired` notifications. They are per node, so each primary is listened to, with
  notifications enabled on it first (and again on every reconnection: a restarted or newly promoted primary does
  not have them).

On one Redis a single connection carries all three. On a cluster the topology is read again every
`topology_refresh_s` and whenever a connection is lost: a primary added or promoted by a failover is listened to,
one gone is dropped, each shard channel follows its slot's owner. Each connection reconnects with backoff, and
whenever one comes back (or a new one starts after start-up) the `on_reconnect` hooks run, so what a gap may have
lost is rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import FIRST_COMPLETED
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from base.redis_client import RedisClient

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
TOPOLOGY_REFRESH_S = 1.0
MAX_BACKOFF_S = 0.5
EXPIRED_CHANNEL = "__keyevent@{db}__:expired"

Handler = Callable[[str], Awaitable[None]]
ReconnectHook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Listening:
    """What one pub/sub connection to one node subscribes to ("" names the one Redis)."""

    node: str
    channels: frozenset[str]
    shard_channels: frozenset[str] = frozenset()
    needs_expiry_events: bool = False


class Bus:
    def __init__(self, redis: RedisClient, topology_refresh_s: float = TOPOLOGY_REFRESH_S) -> None:
        self._redis = redis
        self._topology_refresh_s = topology_refresh_s
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._sharded: set[str] = set()
        self._scripted: set[str] = set()
        self._reconnect_hooks: list[ReconnectHook] = []
        self._subscribed: set[Listening] = set()
        self._plan: frozenset[Listening] = frozenset()
        self._topology_changed = asyncio.Event()
        self._started = False
        self.is_subscribed = asyncio.Event()
        db = 0 if isinstance(redis, RedisCluster) else redis.connection_pool.connection_kwargs.get("db", 0)
        self._expired_channel = EXPIRED_CHANNEL.format(db=db)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._sharded.add(channel)
        self._handlers[channel].append(handler)

    def subscribe_scripted(self, channel: str, handler: Handler) -> None:
        self._scripted.add(channel)
        self._handlers[channel].append(handler)

    def subscribe_expired(self, handler: Handler) -> None:
        self._handlers[self._expired_channel].append(handler)

    def on_reconnect(self, hook: ReconnectHook) -> None:
        self._reconnect_hooks.append(hook)

    async def publish(self, channel: str, message: str | bytes) -> int:
        """How many connections were subscribed to hear it (on a cluster: on the channel's shard)."""
        if isinstance(self._redis, RedisCluster):
            heard: int = await self._redis.spublish(channel, message)
        else:
            heard = await self._redis.publish(channel, message)
        return heard

    async def run(self) -> None:
        """Listen forever, following the cluster's topology; a handler's failure is logged and never stops it."""
        listeners: dict[Listening, asyncio.Task[None]] = {}
        try:
            while True:
                try:
                    self._plan = await self._make_plan()
                except (RedisError, OSError) as error:
                    log.warning("could not read the cluster's topology (%s); listening as before", error)
                for listening in set(listeners) - self._plan:
                    listeners.pop(listening).cancel()
                    self._subscribed.discard(listening)
                for listening in self._plan - set(listeners):
                    listeners[listening] = asyncio.create_task(self._listen(listening, rejoining=self._started))
                self._update_is_subscribed()
                self._topology_changed.clear()
                changed = asyncio.ensure_future(self._topology_changed.wait())
                # One Redis has a fixed topology: its one connection reconnects by itself.
                refresh = self._topology_refresh_s if isinstance(self._redis, RedisCluster) else None
                done, _ = await asyncio.wait(
                    {changed, *listeners.values()}, timeout=refresh, return_when=FIRST_COMPLETED
                )
                changed.cancel()
                for task in done - {changed}:
                    task.result()  # a listener ends only by an unexpected error: the supervisor logs it and restarts
        finally:
            for task in listeners.values():
                task.cancel()
            await asyncio.gather(*listeners.values(), return_exceptions=True)

    async def _make_plan(self) -> frozenset[Listening]:
        expired = frozenset({self._expired_channel} & set(self._handlers))
        if not isinstance(self._redis, RedisCluster):
            channels = frozenset(self._sharded | self._scripted) | expired
            return frozenset({Listening("", channels, needs_expiry_events=bool(expired))})
        await self._redis.initialize()
        ranges = await self._slot_ranges()
        primaries = sorted(set(ranges.values()))
        owners = {
            channel: owner
            for channel in self._sharded
            for (first, last), owner in ranges.items()
            if first <= self._redis.keyslot(channel) <= last
        }
        if set(primaries) != {node.name for node in self._redis.get_primaries()}:
            # The client's own routing follows too (it would on its next MOVED reply anyway).
            await self._redis.nodes_manager.initialize()
        plan = set()
        for name in primaries:
            scripted = frozenset(self._scripted) if name == primaries[0] else frozenset()
            sharded = frozenset(channel for channel, owner in owners.items() if owner == name)
            plan.add(Listening(name, scripted | expired, sharded, needs_expiry_events=bool(expired)))
        return frozenset(plan)

    async def _slot_ranges(self) -> dict[tuple[int, int], str]:
        """Slot range -> its primary, from the first node that answers `CLUSTER SLOTS`. A few small replies: cheaper
        than redis-py's refresh, which rebuilds its map of all 16,384 slots in Python (milliseconds of a busy
        loop, each second)."""
        assert isinstance(self._redis, RedisCluster)
        error: Exception = RedisError("no cluster node is known")
        for node in self._redis.get_nodes():
            try:
                slots: dict[tuple[int, int], dict[str, Any]] = await self._redis.cluster_slots(target_nodes=node)  # type: ignore[assignment]
            except (RedisError, OSError) as failed:
                error = failed
                continue
            return {span: f"{where['primary'][0]}:{where['primary'][1]}" for span, where in slots.items()}
        raise error

    def _update_is_subscribed(self) -> None:
        if self._plan and self._plan <= self._subscribed:
            self._started = True
            self.is_subscribed.set()
        else:
            self.is_subscribed.clear()

    async def _listen(self, listening: Listening, *, rejoining: bool) -> None:
        """Hold one connection to one node, reconnecting with backoff; after it (re)joins late, run the hooks."""
        backoff = 0.1
        client = self._client_for(listening.node)
        try:
            while True:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    if listening.needs_expiry_events:
                        await enable_expiry_events(client)
                    if listening.channels:
                        await pubsub.subscribe(*listening.channels)
                    for channel in listening.shard_channels:  # one per call: they may lie in different slots
                        await pubsub.ssubscribe(channel)
                    self._subscribed.add(listening)
                    self._update_is_subscribed()
                    if rejoining:
                        log.info("pub/sub %s joined after a gap", listening.node or "connection")
                        for hook in self._reconnect_hooks:
                            await hook()
                    rejoining = True
                    backoff = 0.1
                    await self._receive(pubsub)
                except (RedisError, OSError) as error:
                    self._subscribed.discard(listening)
                    self._update_is_subscribed()
                    self._topology_changed.set()
                    log.warning(
                        "pub/sub %s lost (%s); retrying in %.1fs", listening.node or "connection", error, backoff
                    )
                    await asyncio.sleep(backoff)
                    # Capped low: whatever is published before the listener rejoins reaches nobody here.
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                finally:
                    await _close_bounded(pubsub)
        finally:
            await _close_bounded(client)

    async def _receive(self, pubsub: PubSub) -> None:
        async for message in pubsub.listen():
            kind = message["type"]
            if kind in ("message", "smessage"):
                await self._deliver(message["channel"], message["data"])
            elif kind == "sunsubscribe":
                # The node gave up the channel's slot (a resharding or a failover): follow it to its new owner.
                raise RedisError(f"{message['channel']} moved to another node")

    def _client_for(self, node: str) -> Redis:
        """A client of its own for one node's pub/sub connection ("": the one Redis), connected as the shared
        client is but never retrying out of sight: redis-py would reconnect and subscribe again by itself, and
        what was published during the gap would be lost with no hook run to repair it."""
        connection_class: type[AbstractConnection]
        if isinstance(self._redis, RedisCluster):
            host, _, port = node.rpartition(":")
            cluster_node = ClusterNode(host, int(port), **self._redis.nodes_manager.connection_kwargs)
            connection_class, kwargs = cluster_node.connection_class, cluster_node.connection_kwargs
        else:
            connection_class = self._redis.connection_pool.connection_class
            kwargs = self._redis.connection_pool.connection_kwargs
        pool = ConnectionPool(connection_class=connection_class, **{**kwargs, "retry": Retry(NoBackoff(), 0)})
        return Redis(connection_pool=pool)

    async def _deliver(self, channel: str, data: str) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                await handler(data)
            except (RedisError, OSError) as error:  # Redis away mid-handler: what it owed is driven elsewhere
                log.warning("handler for %s failed: %r", channel, error)
            except Exception:
                log.exception("handler for %s failed", channel)


async def enable_expiry_events(redis: Redis) -> bool:
    """Turn on keyevent `expired` notifications on one server, keeping flags already set. False where it refuses."""
    try:
        config = await redis.config_get("notify-keyspace-events")
        current: str = config.get("notify-keyspace-events") or ""
        flags = set(current)
        missing = ("" if "E" in flags else "E") + ("" if flags & {"x", "A"} else "x")
        if missing:
            await redis.config_set("notify-keyspace-events", current + missing)
        return True
    except ResponseError as error:  # CONFIG renamed or not permitted, as with many hosted Redis
        log.warning(
            "Redis refused CONFIG SET notify-keyspace-events (%s). Enable expired events on the server "
            "(notify-keyspace-events Ex, e.g. in your provider's parameter group); until then fallbacks are "
            "fired by the deadline keeper alone.",
            error,
        )
        return False


async def _close_bounded(closable: PubSub | Redis) -> None:
    """Bounded and never awaited past the bound: closing a connection whose read was just cancelled can otherwise
    wait forever and hold up shutdown."""
    closing = asyncio.ensure_future(closable.aclose())
    closing.add_done_callback(lambda t: t.cancelled() or t.exception())
    await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_S)
