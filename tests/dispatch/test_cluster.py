"""On a real Redis Cluster (three primaries and a replica, on loopback): the dispatch suite's core paths, expiry
events heard from every primary, a primary failover mid-window, and three processes each reaching each mechanic
once. Skipped with its reason where only Redis 6.2 is installed; `.ci/run` requires these tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from redis.asyncio import Redis, RedisCluster

from api.settings import Settings
from base.redis_client import connect
from delivery.bus import Bus
from dispatch.keys import DispatchKeys
from presence.keys import PresenceKeys
from scripts.embedded_redis import EmbeddedCluster
from tests.conftest import cluster_redis_binary
from tests.dispatch.test_dispatch import (  # noqa: F401  (collected again here, on the cluster)
    test_accept_race_among_fifty_mechanics_has_one_winner,
    test_decline_falls_back_at_once_and_is_not_offered_again,
    test_each_device_gets_each_offer_once,
    test_mechanic_cancel_after_accept_rebroadcasts_to_others,
    test_notify_and_wait_delivers_on_connect,
    test_online_favorite_gets_the_priority_offer_and_accepts,
    test_window_expiry_falls_back_to_everyone,
)
from tests.dispatch.test_durability import (  # noqa: F401
    processes,
    test_fallback_happens_when_no_process_ran_at_the_deadline,
    test_offers_reach_a_favorite_on_another_process,
    test_sigkill_of_the_creating_process_still_falls_back,
    test_three_processes_fall_back_once_and_accept_once,
)
from tests.helpers import Harness, start_server
from tests.presence.test_heartbeat_batches import (  # noqa: F401
    test_one_flush_refreshes_every_device_and_reports_each_revival_once,
)
from tests.presence.test_presence import (  # noqa: F401
    test_clean_close_is_offline_at_once_with_last_seen,
    test_last_seen_survives_a_redis_wipe,
    test_silent_device_goes_offline_when_ttl_runs_out,
    test_transitions_are_published,
)


@pytest.fixture
def redis_url(cluster: EmbeddedCluster) -> str:
    """Every server and client of these tests talks to the cluster."""
    return cluster.url


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[RedisCluster]:
    client = connect(redis_url, max_connections=16)
    assert isinstance(client, RedisCluster)
    await client.initialize()
    yield client
    keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
    for key in keys:
        await client.delete(key)
    await client.aclose()


def _primary_of(cluster: RedisCluster, key: str) -> str:
    node = cluster.get_node_from_key(key)
    assert node is not None
    return str(node.name)


async def test_presence_keys_spread_over_every_primary(harness: Harness, redis: RedisCluster) -> None:
    """Mechanics' presence lands on every primary, and each one's keys share a slot (their scripts ran)."""
    keys = PresenceKeys(harness.settings.key_prefix)
    primaries = {node.name for node in redis.get_primaries()}
    mechanics: list[str] = []
    homes: set[str] = set()
    while homes != primaries:  # a mechanic's shard is a hash of their id: create until every primary has one
        assert len(mechanics) < 60, homes
        mechanic_id = await harness.create_mechanic(f"M{len(mechanics)}")
        await harness.connect(mechanic_id)
        mechanics.append(mechanic_id)
        homes.add(_primary_of(redis, keys.online(mechanic_id)))
    for mechanic_id in mechanics:
        slots = {
            redis.keyslot(k) for k in (keys.online(mechanic_id), keys.devices(mechanic_id), keys.routes(mechanic_id))
        }
        assert len(slots) == 1
        assert await redis.exists(keys.online(mechanic_id)) == 1
        assert (await harness.status(mechanic_id))["is_online"] is True


async def test_expired_events_are_heard_from_every_primary(redis_url: str, key_prefix: str) -> None:
    """Keyspace notifications are per node: the bus enables them on each primary and hears each one's expiries."""
    client = connect(redis_url, max_connections=8)
    assert isinstance(client, RedisCluster)
    await client.initialize()
    heard: list[str] = []

    async def on_expired(key: str) -> None:
        heard.append(key)

    bus = Bus(client, topology_refresh_s=0.2)
    bus.subscribe_expired(on_expired)
    listening = asyncio.create_task(bus.run())
    try:
        await asyncio.wait_for(bus.is_subscribed.wait(), 10)
        by_primary: dict[str, str] = {}
        index = 0
        while len(by_primary) < len(client.get_primaries()):
            key = f"{key_prefix}:expiring:{index}"
            by_primary.setdefault(_primary_of(client, key), key)
            index += 1
        for key in by_primary.values():
            await client.set(key, "1", px=50)
        deadline = time.monotonic() + 5
        while set(by_primary.values()) - set(heard):
            assert time.monotonic() < deadline, f"heard {heard}, wanted {sorted(by_primary.values())}"
            for key in by_primary.values():
                await client.exists(key)  # looking a key up expires it now, whatever the server's sampling
            await asyncio.sleep(0.05)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await client.aclose()


async def test_a_window_on_each_primary_fires_its_fallback(harness: Harness, redis: RedisCluster) -> None:
    """Bookings until a priority window's key lies on each primary: every one of them falls back to Alex."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    await harness.connect(sam, auto_ack=True)
    alex_app = await harness.connect(alex)
    keys = DispatchKeys(harness.settings.key_prefix)
    windows: dict[str, str] = {}
    primaries = {node.name for node in redis.get_primaries()}
    for _ in range(40):
        if set(windows) == primaries:
            break
        harness.customer_id = str(uuid.uuid4())  # one open request per customer and favorite
        booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
        windows.setdefault(_primary_of(redis, keys.window(booked["id"], 1)), booked["id"])
    assert set(windows) == primaries
    awaited = set(windows.values())
    while awaited:  # the windows fall back in whatever order their keys expire, not the order of booking
        offer = await alex_app.expect("offer", kind="broadcast", timeout=8)
        assert offer["attempt"] == 2
        awaited.discard(offer["request_id"])


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedCluster]:
    """A cluster of this test's own: it is going to lose a primary."""
    with EmbeddedCluster(cluster_redis_binary(), node_timeout_ms=500) as running:
        yield running


async def test_a_primary_failover_mid_window_loses_no_booking(
    own_cluster: EmbeddedCluster, settings: Settings, key_prefix: str
) -> None:
    """The primary holding a priority window's key dies mid-window; its replica takes over. The booking still
    falls back to everyone, exactly once, and is accepted once; presence comes back on the promoted primary."""
    settings = replace(settings, redis_url=own_cluster.url, priority_window_s=3.0)
    client = connect(own_cluster.url, max_connections=8)
    assert isinstance(client, RedisCluster)
    await client.initialize()
    doomed = f"127.0.0.1:{own_cluster.primaries[0].port}"
    async with start_server(settings) as harness:
        sam = await harness.create_mechanic("Sam")
        others = [await harness.create_mechanic(f"M{i}") for i in range(4)]
        sam_app = await harness.connect(sam)
        apps = [await harness.connect(m) for m in others]
        keys = DispatchKeys(key_prefix)
        for _ in range(30):  # until the window's key lies on the primary that is going to die
            booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
            await sam_app.expect("offer", request_id=booked["id"], kind="priority")
            if _primary_of(client, keys.window(booked["id"], 1)) == doomed:
                break
            cancelled = await harness.http.post(
                f"/api/session-requests/{booked['id']}/cancel", headers=harness.customer
            )
            assert cancelled.status_code == 200, cancelled.text
        else:
            pytest.fail("no window key landed on the first primary")
        own_cluster.primaries[0].kill()
        for app in apps:
            await app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=20)
        await asyncio.sleep(0.5)
        assert all(app.count("offer", request_id=booked["id"], kind="broadcast") == 1 for app in apps)
        await asyncio.gather(*(app.send({"type": "accept", "request_id": booked["id"]}) for app in apps))
        await asyncio.sleep(1)
        assert sum(app.count("accepted", request_id=booked["id"]) for app in apps) == 1
        events = [e["kind"] for e in await harness.events(booked["id"])]
        assert events.count("fell_back") == 1 and events.count("accepted") == 1
        replica = Redis(port=own_cluster.replica.port, decode_responses=True)
        assert (await replica.info("replication"))["role"] == "master"
        # The promoted primary was told to announce expiries, as the dead one had been.
        assert "x" in (await replica.config_get("notify-keyspace-events"))["notify-keyspace-events"]
        await replica.aclose()
        for mechanic_id in [sam, *others]:
            assert (await harness.status(mechanic_id))["is_online"] is True
    await client.aclose()
