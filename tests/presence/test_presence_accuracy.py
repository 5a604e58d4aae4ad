"""How right "online" is, measured: a device gone silent at a known moment goes offline within the bounds the
settings promise, and the figures (offline lag, flaps, ghosts) say so in `/api/admin/presence-accuracy`."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from base.clock import now_ms
from base.redis_client import connect
from presence.config import PresenceConfig
from presence.keys import shard_of
from presence.tracker import PresenceTracker
from tests.helpers import Harness


async def _accuracy(harness: Harness) -> dict[str, Any]:
    response = await harness.http.get("/api/admin/presence-accuracy", headers=harness.admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _lags(accuracy: dict[str, Any]) -> int:
    return sum(lag["count"] for lag in accuracy["offline_lag"].values())


async def test_a_silent_device_goes_offline_within_the_ttl_and_one_sweep(harness: Harness) -> None:
    """A device that stops sending at a known moment (its welcome: it never heartbeats) is shown offline no sooner
    than PRESENCE_TTL_S after, and no later than the TTL plus one sweep (plus a second: a loaded machine's event
    loop runs late, and this is a bound, not a speed); the offline lag is recorded once, as the server's silence
    sweep or Redis's expiry saw it, and not as an immediate one (its bucket reaches the TTL)."""
    sam = await harness.create_mechanic("Sam")
    before = await _accuracy(harness)
    low, high = before["expected_offline_lag_s"]
    assert low == harness.settings.presence_ttl_s

    await harness.connect(sam, heartbeats=False)
    silent_from = time.monotonic()
    while (await harness.status(sam))["is_online"]:
        assert time.monotonic() - silent_from < high + 2.0, "still online long past the TTL and one sweep"
        await asyncio.sleep(0.02)
    offline_after = time.monotonic() - silent_from
    assert low - 0.1 <= offline_after <= high + 1.0, offline_after

    after = await _accuracy(harness)
    assert _lags(after) == _lags(before) + 1
    (recorded,) = [
        lag for cause, lag in after["offline_lag"].items() if lag["count"] > before["offline_lag"][cause]["count"]
    ]
    assert recorded["p50_s"] >= low, "recorded as the silence it was, not as an immediate close"


async def test_back_online_within_a_minute_is_a_flap(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    before = (await _accuracy(harness))["flaps"]
    app = await harness.connect(sam)
    await app.close()
    await harness.wait_for_status(sam, is_online=False)
    assert (await _accuracy(harness))["flaps"] == before
    await harness.connect(sam)
    assert (await _accuracy(harness))["flaps"] == before + 1


async def test_a_mechanic_shown_online_without_a_recent_heartbeat_is_a_ghost(redis_url: str, key_prefix: str) -> None:
    """The replica's reconcile counts whom it showed online but Redis last heard from longer than a TTL ago (a lost
    offline transition, an expiry not yet fired), and no one else; and heals it."""
    redis = connect(redis_url, 4)
    tracker = PresenceTracker(redis, PresenceConfig(key_prefix=key_prefix, ttl_s=30))
    try:
        live, ghost = str(uuid.uuid4()), str(uuid.uuid4())
        for mechanic_id in (live, ghost):
            assert await tracker.track(mechanic_id, f"process.{mechanic_id}")
        assert await tracker.replica.reconcile() == 0
        assert tracker.replica.is_online(ghost)
        # Its last heartbeat as the heartbeat script records it: the time, and the index's expiry (time + TTL).
        stale = now_ms() - 31_000 - 1000
        await redis.hset(tracker.keys.last_seen(shard_of(ghost)), ghost, stale)
        await redis.zadd(tracker.keys.online_index(shard_of(ghost)), {ghost: stale + 30_000})

        assert await tracker.replica.reconcile() == 1

        assert not tracker.replica.is_online(ghost) and tracker.replica.is_online(live)
        assert await tracker.replica.reconcile() == 0
    finally:
        await redis.aclose()
