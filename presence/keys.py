"""Every Redis key and channel presence uses, built from one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresenceKeys:
    prefix: str

    def online(self, mechanic_id: str) -> str:
        """String key with a TTL: exists while any of the mechanic's devices heartbeats."""
        return f"{self.prefix}:online:{mechanic_id}"

    def online_prefix(self) -> str:
        return f"{self.prefix}:online:"

    def devices(self, mechanic_id: str) -> str:
        """Sorted set of the mechanic's connection ids scored by their expiry (ms)."""
        return f"{self.prefix}:devices:{mechanic_id}"

    def routes(self, mechanic_id: str) -> str:
        """Hash process id -> expiry (ms) of the processes holding this mechanic's sockets: where envelopes for
        them are published. It outlives presence (ROUTE_TTLS presence TTLs), so a socket whose heartbeats run late
        still gets its frames; a dead process's entry expires on its own."""
        return f"{self.prefix}:routes:{mechanic_id}"

    @property
    def last_seen(self) -> str:
        """Hash mechanic id -> last heartbeat (epoch ms); flushed to the database in batches."""
        return f"{self.prefix}:last_seen"

    @property
    def last_seen_dirty(self) -> str:
        """Set of mechanic ids whose last_seen changed since the last flush."""
        return f"{self.prefix}:last_seen:dirty"

    @property
    def online_index(self) -> str:
        """Sorted set mechanic id -> presence expiry (ms): who is online, countable in one call."""
        return f"{self.prefix}:online_index"

    @property
    def transitions(self) -> str:
        """Pub/sub channel carrying online/offline transitions as JSON."""
        return f"{self.prefix}:presence"
