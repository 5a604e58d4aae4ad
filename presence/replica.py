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
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from base.clock import now_ms
from base.redis_client import RedisClient
from presence.keys import SHARDS, PresenceKeys

log = logging.getLogger(__name__)


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
        """Replace the replica with what Redis holds now (every shard's indexes, in one pipeline). A transition
        heard while the read was in flight is newer than the snapshot may be: it is kept, or a mechanic who came
        online meanwhile would read as offline until the next rebuild (and miss a priority offer)."""
        now = now_ms()
        changed_meanwhile: set[str] = set()
        self._rebuilds_in_flight.append(changed_meanwhile)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in range(SHARDS):
                    pipe.zrangebyscore(self._keys.online_index(shard), now, "+inf")
                    pipe.zrangebyscore(self._keys.online_index(shard), "-inf", now)
                    pipe.hgetall(self._keys.last_seen(shard))
                replies = await pipe.execute()
        finally:
            self._rebuilds_in_flight.remove(changed_meanwhile)
        online = [i for reply in replies[0::3] for i in reply]
        lapsed = [i for reply in replies[1::3] for i in reply]
        before = self._online
        self._online = ({str(i) for i in online} - changed_meanwhile) | (self._online & changed_meanwhile)
        self._changed(before ^ self._online)
        for last_seen in replies[2::3]:
            for mechanic_id, ms in last_seen.items():
                self._last_seen[str(mechanic_id)] = max(self._last_seen.get(str(mechanic_id), 0), int(ms))
        if lapsed:
            # Looking a lapsed key up makes Redis expire it and fire `expired` now, not minutes later.
            async with self._redis.pipeline(transaction=False) as pipe:
                for mechanic_id in lapsed:
                    pipe.exists(self._keys.online(str(mechanic_id)))
                await pipe.execute()
