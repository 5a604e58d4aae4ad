"""No booking is lost or assigned twice: several processes, a SIGKILL, no process at the deadline, a Redis restart."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from redis.asyncio import Redis

from api.auth import Role, mint_token
from api.settings import Settings
from scripts.embedded_redis import EmbeddedRedis
from tests.helpers import Harness, ServerProcess, spawn_server, start_server, stop_server


@pytest.fixture
async def processes(harness: Harness) -> AsyncIterator[list[ServerProcess]]:
    """Two more server processes beside the in-process one, sharing its Redis and database."""
    spawned = await asyncio.gather(spawn_server(harness.settings), spawn_server(harness.settings))
    yield list(spawned)
    for process in spawned:
        stop_server(process)


async def _book_via(harness: Harness, base_url: str, **body: object) -> dict[str, object]:
    body = {"session_type": "video", "plan_code": "standard", **body}
    response = await harness.http.post(f"{base_url}/api/session-requests", json=body, headers=harness.customer)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_three_processes_fall_back_once_and_accept_once(harness: Harness, processes: list[ServerProcess]) -> None:
    """With three processes, the fallback is broadcast once to each device and exactly one accept wins."""
    urls = [harness.ws_url, processes[0].ws_url, processes[1].ws_url]
    sam = await harness.create_mechanic("Sam")
    others = [await harness.create_mechanic(f"M{i}") for i in range(6)]
    sam_app = await harness.connect(sam, ws_url=urls[1])
    apps = [await harness.connect(m, ws_url=urls[i % 3]) for i, m in enumerate(others)]
    booked = await _book_via(harness, processes[1].base_url, routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer", kind="priority")
    for app in apps:
        await app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=5)
    await asyncio.sleep(0.5)
    assert all(app.count("offer", request_id=booked["id"]) == 1 for app in apps)
    kinds = [e["kind"] for e in await harness.events(str(booked["id"]))]
    assert kinds.count("fell_back") == 1 and kinds.count("broadcast") == 1
    await asyncio.gather(*(app.send({"type": "accept", "request_id": booked["id"]}) for app in apps))
    await asyncio.sleep(1)
    winners = [app for app in apps if app.count("accepted")]
    assert len(winners) == 1
    assert sum(app.count("error", code="offer_unavailable") for app in apps) == len(apps) - 1
    current = await harness.request(str(booked["id"]))
    assert current["status"] == "accepted" and current["mechanic_id"] == winners[0].mechanic_id


async def test_offers_reach_a_favorite_on_another_process(harness: Harness, processes: list[ServerProcess]) -> None:
    """Presence and offers cross processes: a favorite connected elsewhere is online here and gets the offer."""
    sam = await harness.create_mechanic("Sam")
    phone = await harness.connect(sam, ws_url=processes[0].ws_url)
    tablet = await harness.connect(sam, ws_url=processes[1].ws_url)
    assert (await harness.status(sam))["is_online"] is True
    booked = await _book_via(harness, harness.base_url, routing="priority", preferred_mechanic_id=sam)
    await phone.expect("offer", request_id=booked["id"])
    await tablet.expect("offer", request_id=booked["id"])
    await phone.send({"type": "accept", "request_id": booked["id"]})
    await tablet.expect("accepted", request_id=booked["id"])


async def test_sigkill_of_the_creating_process_still_falls_back(
    harness: Harness, processes: list[ServerProcess]
) -> None:
    """The process that created the request dies with SIGKILL mid-window: the fallback still happens on time."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam, ws_url=processes[0].ws_url)
    alex_app = await harness.connect(alex, ws_url=processes[1].ws_url)
    booked = await _book_via(harness, processes[0].base_url, routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer")
    processes[0].process.send_signal(signal.SIGKILL)
    processes[0].process.wait()
    offer = await alex_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=5)
    assert offer["attempt"] == 2
    kinds = [e["kind"] for e in await harness.events(str(booked["id"]))]
    assert kinds.count("fell_back") == 1


async def test_fallback_happens_when_no_process_ran_at_the_deadline(settings: Settings, redis: Redis) -> None:
    """Every server is down at the deadline: the first one to start falls back within a second."""
    secret = str(settings.jwt_secret)
    admin = {"Authorization": f"Bearer {mint_token(secret, sub=str(uuid.uuid4()), role=Role.ADMIN)}"}
    customer = {"Authorization": f"Bearer {mint_token(secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER)}"}
    first = await spawn_server(settings)
    async with httpx.AsyncClient(base_url=first.base_url) as http:
        sam = (await http.post("/api/admin/mechanics", json={"name": "Sam"}, headers=admin)).json()["id"]
        body = {
            "session_type": "chat",
            "plan_code": "quick",
            "routing": "notify_and_wait",
            "preferred_mechanic_id": sam,
        }
        booked = (await http.post("/api/session-requests", json=body, headers=customer)).json()
    stop_server(first)
    await asyncio.sleep(settings.notify_wait_window_s + 0.5)
    second = await spawn_server(settings)
    ready_at = time.monotonic()
    try:
        async with httpx.AsyncClient(base_url=second.base_url) as http:
            while True:
                current = (await http.get(f"/api/session-requests/{booked['id']}", headers=admin)).json()
                if current["phase"] == "broadcast":
                    break
                assert time.monotonic() - ready_at < 1.0, f"still {current['phase']} a second after start"
                await asyncio.sleep(0.05)
            assert current["fallback_broadcast_at"] is not None
    finally:
        stop_server(second)


async def test_redis_restart_mid_window_still_falls_back(settings: Settings, private_redis: EmbeddedRedis) -> None:
    """Redis restarts mid-window and loses every key: the windows are rebuilt and the fallback still fires."""
    settings = replace(settings, redis_url=private_redis.url, priority_window_s=3.0)
    async with start_server(settings) as harness:
        sam = await harness.create_mechanic("Sam")
        alex = await harness.create_mechanic("Alex")
        sam_app = await harness.connect(sam)
        alex_app = await harness.connect(alex)
        booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
        await sam_app.expect("offer")
        private_redis.restart()
        # The apps' heartbeats (every 0.5 s) restore their presence on the new Redis.
        offer = await alex_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=6)
        assert offer["attempt"] == 2
        await alex_app.send({"type": "heartbeat"})
        await alex_app.expect("heartbeat_ack")
        assert (await harness.status(alex))["is_online"] is True
        ready = await harness.http.get("/readyz")
        assert ready.status_code == 200


async def test_readyz_reports_a_redis_outage(settings: Settings, private_redis: EmbeddedRedis) -> None:
    """/readyz answers 503 while Redis is unreachable, and /healthz still 200."""
    settings = replace(settings, redis_url=private_redis.url)
    async with start_server(settings) as harness:
        private_redis.stop()
        ready = await harness.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False
        assert (await harness.http.get("/healthz")).status_code == 200
        private_redis.start()


async def test_hundred_concurrent_priority_bookings_each_accepted_once(harness: Harness) -> None:
    """100 concurrent priority bookings, favorites online and offline: each accepted exactly once, none lost."""
    online = [await harness.create_mechanic(f"Fav{i}") for i in range(10)]
    offline = [await harness.create_mechanic(f"Away{i}") for i in range(5)]
    helpers = [await harness.create_mechanic(f"Helper{i}") for i in range(3)]
    for mechanic_id in online + helpers:
        await harness.connect(mechanic_id, auto_accept=True)
    customers = [harness.auth(harness.token(Role.CUSTOMER, name=f"C{i}")) for i in range(100)]

    async def book(i: int) -> str:
        favorite = (online + offline)[i % 15]
        body = {"session_type": "video", "plan_code": "quick", "routing": "priority", "preferred_mechanic_id": favorite}
        response = await harness.http.post("/api/session-requests", json=body, headers=customers[i])
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    request_ids = await asyncio.gather(*(book(i) for i in range(100)))
    deadline = time.monotonic() + 15
    pending = set(request_ids)
    while pending and time.monotonic() < deadline:
        for request_id in list(pending):
            current = (await harness.http.get(f"/api/session-requests/{request_id}", headers=harness.admin)).json()
            if current["status"] == "accepted":
                pending.discard(request_id)
        await asyncio.sleep(0.2)
    assert not pending, f"{len(pending)} bookings never accepted"
    for request_id in request_ids:
        kinds = [e["kind"] for e in await harness.events(request_id)]
        assert kinds.count("accepted") == 1, kinds

    def accepted_frames() -> list[str]:
        return sorted(m["request_id"] for app in harness.apps for m in app.received if m["type"] == "accepted")

    # Each winner is told after the commit the status poll saw: the last frames may still be on their way.
    while accepted_frames() != sorted(request_ids) and time.monotonic() < deadline + 5:
        await asyncio.sleep(0.05)
    assert accepted_frames() == sorted(request_ids)
