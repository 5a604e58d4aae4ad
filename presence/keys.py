"""Every Redis key and channel presence uses, built from one configurable prefix.

On a Redis Cluster a Lua script may only touch keys of one hash slot. So the keys are sharded: a mechanic belongs
to one of `SHARDS` shards (a hash of their id), and every key of theirs and every shared index a script updates
with them (last_seen, the dirty set, the online index) carries that shard's hash tag, `{p<shard>}`. Readers of the
indexes read all shards (one pipeline). Channels are not keys: they take no tag.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

SHARDS = 64  # enough for the shards to spread evenly over the primaries of a cluster


def shard_of(mechanic_id: str) -> int:
    return zlib.crc32(mechanic_id.encode()) % SHARDS


class MechanicKeys(NamedTuple):
    """A mechanic's keys and their shard's indexes, in the order of the device scripts' KEYS."""

    online: str
    devices: str
    routes: str
    last_seen: str
    last_seen_dirty: str
    online_index: str


@dataclass(frozen=True)
class PresenceKeys:
    prefix: str
    _online_key: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_online_key", re.compile(rf"{re.escape(self.prefix)}:\{{p\d+\}}:online:(.+)\Z"))
        object.__setattr__(self, "_tags", tuple(f"{self.prefix}:{{p{shard}}}" for shard in range(SHARDS)))

    def of_mechanic(self, mechanic_id: str) -> MechanicKeys:
        """Every key a device script touches, the shard hashed once (a heartbeat's keys)."""
        shard = shard_of(mechanic_id)
        tag = self._tags[shard]
        return MechanicKeys(
            f"{tag}:online:{mechanic_id}",
            f"{tag}:devices:{mechanic_id}",
            f"{tag}:routes:{mechanic_id}",
            self.last_seen(shard),
            self.last_seen_dirty(shard),
            self.online_index(shard),
        )

    def online(self, mechanic_id: str) -> str:
        """String key with a TTL: exists while any of the mechanic's devices heartbeats."""
        return self.of_mechanic(mechanic_id).online

    def mechanic_of_online(self, key: str) -> str | None:
        """The mechanic whose online key this is, or None for any other key."""
        found = self._online_key.match(key)
        return found[1] if found else None

    def devices(self, mechanic_id: str) -> str:
        """Sorted set of the mechanic's connection ids scored by their expiry (ms)."""
        return self.of_mechanic(mechanic_id).devices

    def routes(self, mechanic_id: str) -> str:
        """Hash process id -> expiry (ms) of the processes holding this mechanic's sockets: where envelopes for
        them are published. It outlives presence (ROUTE_TTLS presence TTLs), so a socket whose heartbeats run late
        still gets its frames; a dead process's entry expires on its own."""
        return self.of_mechanic(mechanic_id).routes

    def last_seen(self, shard: int) -> str:
        """Hash mechanic id -> last heartbeat (epoch ms) of the shard's mechanics; flushed to the database."""
        return f"{self._tags[shard]}:last_seen"

    def last_seen_dirty(self, shard: int) -> str:
        """Set of the shard's mechanic ids whose last_seen changed since the last flush."""
        return f"{self._tags[shard]}:last_seen:dirty"

    def online_index(self, shard: int) -> str:
        """Sorted set mechanic id -> presence expiry (ms) of the shard's mechanics: who is online, in one read."""
        return f"{self._tags[shard]}:online_index"

    @property
    def transitions(self) -> str:
        """Pub/sub channel carrying online/offline transitions as JSON."""
        return f"{self.prefix}:presence"
