"""The favorites A/B rollout: a stable hash of the customer id puts each customer in one arm for good."""

from __future__ import annotations

import functools
import hashlib
from enum import StrEnum


class Arm(StrEnum):
    PRIORITY = "priority"  # priority routing on: the favorite is offered the booking first
    CONTROL = "control"  # standard broadcast, even when the customer asked for their favorite


@functools.lru_cache(maxsize=65536)  # every status poll asks for its customer's arm: a hash per poll showed in py-spy
def bucket(customer_id: str) -> int:
    """0–99, the same for a customer on every process and every day (unlike Python's salted `hash`)."""
    digest = hashlib.sha256(customer_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def arm_for(customer_id: str, rollout_percent: int) -> Arm:
    return Arm.PRIORITY if bucket(customer_id) < rollout_percent else Arm.CONTROL
