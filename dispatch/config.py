from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DispatchConfig:
    key_prefix: str
    priority_window_s: float
    notify_wait_window_s: float
    offer_ack_timeout_s: float
    offer_resends: int
    rollout_percent: int
    push_retry_base_s: float
    routed_deliveries: bool  # False: every envelope to every process (the way before routing, kept to compare)
