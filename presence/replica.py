"""This process's copy of who is online and when each mechanic was last seen, so presence reads cost nothing.

Phoenix Tracker's model: every node answers presence reads locally from a replica that the presence transitions
keep current. Here the transitions are the ones the Lua scripts already publish (online, offline with the time
last seen). A replica that missed messages (a pub/sub reconnection, a lost message) is rebuilt from Redis: at
start-up, on every reconnection, and every `PRESENCE_TTL_S` by `reconcile`, so a lost transition heals within
one TTL. Reconciling also touches the online key of anyone whose presence ran out without a transition (a
server that died with its sockets), which makes Redis expire the key and announce the offline transition now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

from base.clock import now_ms
from base.redis_client import RedisClient
from presence.keys import SHARDS, PresenceKeys, shard_of
from presence.metrics import GHOSTS

log = logging.getLogger(__name__)

GHOST_SLACK_MS = 1000  # a heartbeat's batch and its trip to Redis: not yet a ghost


class Transition(msgspec.Struct, frozen=True):
    """What the presence scripts publish on the transitions channel."""

    mechanic_id: str
    is_online: bool
    at: int


decode_transition = msgspec.json.Decoder(Transition).decode


@dataclass(frozen=True)
class LiveStatus:
    is_online: bool
    last_seen_ms: int | None  # None: not seen since Redis last lost its keys (the database may know)


class PresenceReplica:
    def __init__(self, redis: RedisClient, keys: PresenceKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._online: set[str] = set()
        self._last_seen: dict[str, int] = {}
        self._changed_at: dict[str, int] = {}  # a transition older than the last one applied is stale
        # Per rebuild in flight, the mechanics whose transitions were applied meanwhile: its snapshot may predate
        # them, so their membership is kept as the transitions left it.
        self._rebuilds_in_flight: list[set[str]] = []
        self._change_hooks: list[Callable[[str], None]] = []

    def on_change(self, hook: Callable[[str], None]) -> None:
        """Call `hook(mechanic_id)` whenever a mechanic's status as this replica answers it changes (online, or
        offline since a new time): what live views (the customers' favorites streams) follow."""
        self._change_hooks.append(hook)

    def _changed(self, mechanic_ids: set[str] | list[str]) -> None:
        for hook in self._change_hooks:
            for mechanic_id in mechanic_ids:
                hook(mechanic_id)

    def status(self, mechanic_id: str) -> LiveStatus:
        if mechanic_id in self._online:
            # Online means seen within the TTL; now is the truthful last_seen.
            return LiveStatus(is_online=True, last_seen_ms=now_ms())
        return LiveStatus(is_online=False, last_seen_ms=self._last_seen.get(mechanic_id))

    def is_online(self, mechanic_id: str) -> bool:
        return mechanic_id in self._online

    def offline_since(self, mechanic_id: str) -> int | None:
        """When an offline mechanic's last transition was applied (ms; None if online or never seen)."""
        if mechanic_id in self._online:
            return None
        return self._changed_at.get(mechanic_id)

    def online_ids(self) -> list[str]:
        return list(self._online)

    def apply(self, transition: Transition) -> None:
        """Apply a transition heard on the channel, or made by this process (applied at once, then heard again)."""
        if transition.at < self._changed_at.get(transition.mechanic_id, 0):
            return
        self._changed_at[transition.mechanic_id] = transition.at
        for changed in self._rebuilds_in_flight:
            changed.add(transition.mechanic_id)
        was_online = transition.mechanic_id in self._online
        if transition.is_online:
            self._online.add(transition.mechanic_id)
        else:
            self._online.discard(transition.mechanic_id)
        previous = self._last_seen.get(transition.mechanic_id, 0)
        self._last_seen[transition.mechanic_id] = max(previous, transition.at)
        if was_online != transition.is_online or (not was_online and transition.at > previous):
            self._changed([transition.mechanic_id])

    def forget(self, mechanic_id: str) -> None:
        was_online = mechanic_id in self._online
        self._online.discard(mechanic_id)
        for changed in self._rebuilds_in_flight:
            changed.add(mechanic_id)
        if was_online:
            self._changed([mechanic_id])

    async def on_transition(self, data: str) -> None:
        try:
            self.apply(decode_transition(data))
        except msgspec.DecodeError:
            log.warning("ignoring a malformed presence transition: %r", data[:200])

    async def rebuild(self) -> None:
        """Replace the replica with what Redis holds now: who is online, and when every mechanic Redis knows was
        last seen (start-up, and a pub/sub reconnection, after which any transition may have been missed)."""
        await self._read(every_last_seen=True)

    async def reconcile(self) -> int:
        """Heal what transitions were lost since the last read (every TTL): who is online is read again, and the
        last_seen only of the mechanics whose status that changed, not of every mechanic ever seen (at 100,000
        mechanics, reading and merging all of them stopped each process for a tenth of a second every TTL).

        Returns the ghosts found, and sets the ghosts gauge: mechanics this replica showed online whose last
        heartbeat is older than the TTL by more than GHOST_SLACK_MS (a lost offline transition, an expiry not yet
        fired). An online index score is a device's last heartbeat plus the TTL, so the read that heals them
        counts them too."""
        return await self._read(every_last_seen=False)

    async def _read(self, *, every_last_seen: bool) -> int:
        """One pipeline over every shard's index (and last_seen hash). A transition heard while the read was in
        flight is newer than the snapshot may be: it is kept, or a mechanic who came online meanwhile would read
        as offline until the next read (and miss a priority offer)."""
        now = now_ms()
        changed_meanwhile: set[str] = set()
        self._rebuilds_in_flight.append(changed_meanwhile)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in range(SHARDS):
                    pipe.zrangebyscore(self._keys.online_index(shard), now, "+inf")
                    pipe.zrangebyscore(self._keys.online_index(shard), now - GHOST_SLACK_MS, now)
                    pipe.zrangebyscore(self._keys.online_index(shard), "-inf", now)
                    if every_last_seen:
                        pipe.hgetall(self._keys.last_seen(shard))
                replies = await pipe.execute()
        finally:
            # By identity: two reads in flight may hold equal sets, and `remove` would take the other's.
            self._rebuilds_in_flight = [s for s in self._rebuilds_in_flight if s is not changed_meanwhile]
        stride = 4 if every_last_seen else 3
        online = {str(i) for reply in replies[0::stride] for i in reply}
        just_lapsed = {str(i) for reply in replies[1::stride] for i in reply}
        lapsed = [str(i) for reply in replies[2::stride] for i in reply]
        before = self._online
        ghosts = len(before - online - just_lapsed - changed_meanwhile)
        GHOSTS.set(ghosts)
        self._online = (online - changed_meanwhile) | (before & changed_meanwhile)
        changed = before ^ self._online
        self._changed(changed)
        if every_last_seen:
            for last_seen in replies[3::stride]:
                self._merge_last_seen(last_seen.items())
        elif changed:
            await self._read_last_seen(changed)
        if lapsed:
            # Looking a lapsed key up makes Redis expire it and fire `expired` now, not minutes later.
            async with self._redis.pipeline(transaction=False) as pipe:
                for mechanic_id in lapsed:
                    pipe.exists(self._keys.online(mechanic_id))
                await pipe.execute()
        return ghosts

    async def _read_last_seen(self, mechanic_ids: set[str]) -> None:
        by_shard: dict[int, list[str]] = {}
        for mechanic_id in mechanic_ids:
            by_shard.setdefault(shard_of(mechanic_id), []).append(mechanic_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.hmget(self._keys.last_seen(shard), ids)
            replies = await pipe.execute()
        for ids, seen in zip(by_shard.values(), replies, strict=True):
            self._merge_last_seen((i, ms) for i, ms in zip(ids, seen, strict=True) if ms is not None)

    def _merge_last_seen(self, seen: Iterable[tuple[str, str]]) -> None:
        for mechanic_id, ms in seen:
            self._last_seen[str(mechanic_id)] = max(self._last_seen.get(str(mechanic_id), 0), int(ms))
