from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresenceConfig:
    key_prefix: str
    heartbeat_interval_s: float
    ttl_s: float
    last_seen_flush_s: float
