from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresenceConfig:
    key_prefix: str
    ttl_s: float
