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

SHARDS = 64  # enough for the shards to spread evenly over the primaries of a cluster


def shard_of(mechanic_id: str) -> int:
    return zlib.crc32(mechanic_id.encode()) % SHARDS


@dataclass(frozen=True)
class PresenceKeys:
    prefix: str
    _online_key: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_online_key", re.compile(rf"{re.escape(self.prefix)}:\{{p\d+\}}:online:(.+)\Z"))

    def _tagged(self, shard: int) -> str:
        return f"{self.prefix}:{{p{shard}}}"

    def online(self, mechanic_id: str) -> str:
        """String key with a TTL: exists while any of the mechanic's devices heartbeats."""
        return f"{self._tagged(shard_of(mechanic_id))}:online:{mechanic_id}"

    def mechanic_of_online(self, key: str) -> str | None:
        """The mechanic whose online key this is, or None for any other key."""
        found = self._online_key.match(key)
        return found[1] if found else None

    def devices(self, mechanic_id: str) -> str:
        """Sorted set of the mechanic's connection ids scored by their expiry (ms)."""
        return f"{self._tagged(shard_of(mechanic_id))}:devices:{mechanic_id}"

    def routes(self, mechanic_id: str) -> str:
        """Hash process id -> expiry (ms) of the processes holding this mechanic's sockets: where envelopes for
        them are published. It outlives presence (ROUTE_TTLS presence TTLs), so a socket whose heartbeats run late
        still gets its frames; a dead process's entry expires on its own."""
        return f"{self._tagged(shard_of(mechanic_id))}:routes:{mechanic_id}"

    def last_seen(self, shard: int) -> str:
        """Hash mechanic id -> last heartbeat (epoch ms) of the shard's mechanics; flushed to the database."""
        return f"{self._tagged(shard)}:last_seen"

    def last_seen_dirty(self, shard: int) -> str:
        """Set of the shard's mechanic ids whose last_seen changed since the last flush."""
        return f"{self._tagged(shard)}:last_seen:dirty"

    def online_index(self, shard: int) -> str:
        """Sorted set mechanic id -> presence expiry (ms) of the shard's mechanics: who is online, in one read."""
        return f"{self._tagged(shard)}:online_index"

    @property
    def transitions(self) -> str:
        """Pub/sub channel carrying online/offline transitions as JSON."""
        return f"{self.prefix}:presence"
