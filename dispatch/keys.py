"""Every Redis key and channel dispatch uses, built from the one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DispatchKeys:
    prefix: str

    def window(self, request_id: str, attempt: int) -> str:
        """Exists while a request's priority window is open; its `expired` event triggers the fallback."""
        return f"{self.prefix}:window:{request_id}:{attempt}"

    def parse_window(self, key: str) -> tuple[str, int] | None:
        head = f"{self.prefix}:window:"
        if not key.startswith(head):
            return None
        request_id, _, attempt = key[len(head) :].rpartition(":")
        return (request_id, int(attempt)) if attempt.isdigit() else None

    @property
    def changed_mechanics(self) -> str:
        """Pub/sub channel announcing mechanics deleted or moved between workshops: every process drops them from
        its cache."""
        return f"{self.prefix}:mechanics:changed"

    @property
    def changed_workshops(self) -> str:
        """Pub/sub channel announcing workshops deleted or whose members changed, for the same reason."""
        return f"{self.prefix}:workshops:changed"

    @property
    def changed_favorites(self) -> str:
        """Pub/sub channel announcing a customer's favorites added or removed: their live streams re-read them."""
        return f"{self.prefix}:favorites:changed"

    @property
    def deadlines(self) -> str:
        """Pub/sub channel on which a process says it armed a deadline, so every keeper reads it now."""
        return f"{self.prefix}:deadlines"

    @property
    def deliveries(self) -> str:
        """Pub/sub channel carrying envelopes for mechanics' sockets on every process."""
        return f"{self.prefix}:deliver"
