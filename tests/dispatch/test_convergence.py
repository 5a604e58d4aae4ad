"""Every committed change reaches its sockets, whatever Redis does: Redis SIGKILLed mid-booking, mid-accept and
mid-fallback (and restarted empty), a change left owed by a process that died, and retried bookings that stay one
booking. Each fault is caused, never simulated: a real Redis process is killed, a real server process too."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import replace

import httpx
import pytest
from redis.asyncio import Redis

from api.runtime import open_services
from api.settings import Settings
from base.database import open_database
from dispatch.booking import NewRequest
from dispatch.owed import GRACE_S
from dispatch.requests import Requests
from scripts.embedded_redis import EmbeddedRedis
from tests.helpers import Harness, spawn_server, start_server, stop_server

# Once Redis is back, sockets converge within this (the bound on one Redis is 2 s; a CI machine is slower).
CONVERGES_WITHIN_S = 4.0
BROADCAST = {"session_type": "chat", "plan_code": "quick", "routing": "broadcast"}


@pytest.fixture
def own_settings(settings: Settings, private_redis: EmbeddedRedis) -> Settings:
    return replace(settings, redis_url=private_redis.url)


async def _post_booking(harness: Harness, key: str, **body: object) -> httpx.Response:
    headers = {**harness.customer, "Idempotency-Key": key}
    return await harness.http.post("/api/session-requests", json={**BROADCAST, **body}, headers=headers)


async def _restart_after(private_redis: EmbeddedRedis, pause_s: float) -> float:
    """Bring the killed Redis back, empty, after a pause; the moment it answers again (loop time)."""
    await asyncio.sleep(pause_s)
    await asyncio.to_thread(private_redis.start)
    return asyncio.get_running_loop().time()


async def test_a_booking_made_while_redis_is_down_is_stored_answered_and_offered_once_it_is_back(
    own_settings: Settings, private_redis: EmbeddedRedis
) -> None:
    """201 while Redis is dead, the same booking for the retry with its key, and the offer on the socket that
    stayed open within the bound once Redis is back."""
    async with start_server(own_settings) as harness:
        alex = await harness.create_mechanic("Alex")
        alex_app = await harness.connect(alex)
        private_redis.kill()
        first = await _post_booking(harness, "book-during-outage")
        retry = await _post_booking(harness, "book-during-outage")
        assert first.status_code == 201, first.text
        assert retry.status_code == 201 and retry.json()["id"] == first.json()["id"]
        assert retry.headers["idempotent-replayed"] == "true"
        back_at = await _restart_after(private_redis, 0.5)
        await alex_app.expect("offer", request_id=first.json()["id"], timeout=CONVERGES_WITHIN_S + 1)
        assert asyncio.get_running_loop().time() - back_at < CONVERGES_WITHIN_S
        listed = await harness.http.get("/api/customer/session-requests", headers=harness.customer)
        assert [r["id"] for r in listed.json()["requests"]] == [first.json()["id"]]


async def test_an_accept_while_redis_is_down_tells_the_winner_at_once_and_the_others_once_it_is_back(
    own_settings: Settings, private_redis: EmbeddedRedis
) -> None:
    """The winner's own socket answers the accept without Redis; the other holder's offer is revoked after."""
    async with start_server(own_settings) as harness:
        sam = await harness.create_mechanic("Sam")
        alex = await harness.create_mechanic("Alex")
        sam_app = await harness.connect(sam)
        alex_app = await harness.connect(alex)
        booked = await harness.book(**BROADCAST)
        await sam_app.expect("offer", request_id=booked["id"])
        await alex_app.expect("offer", request_id=booked["id"])
        private_redis.kill()
        await sam_app.send({"type": "accept", "request_id": booked["id"]})
        await sam_app.expect("accepted", request_id=booked["id"], timeout=3)
        await _restart_after(private_redis, 0.5)
        revoked = await alex_app.expect("offer_revoked", request_id=booked["id"], timeout=CONVERGES_WITHIN_S)
        assert revoked["reason"] == "taken"
        current = await harness.request(booked["id"])
        assert current["status"] == "accepted" and current["mechanic_id"] == sam
        assert sam_app.count("accepted", request_id=booked["id"]) == 1


async def test_a_fallback_while_redis_is_down_is_broadcast_once_it_is_back(
    own_settings: Settings, private_redis: EmbeddedRedis
) -> None:
    """The window closes while Redis is dead (the keeper's timer, from the database): the request falls back on
    time, and everyone connected gets the broadcast once Redis is back, and accepts it once."""
    settings = replace(own_settings, priority_window_s=1.0)
    async with start_server(settings) as harness:
        sam = await harness.create_mechanic("Sam")
        alex = await harness.create_mechanic("Alex")
        sam_app = await harness.connect(sam)
        alex_app = await harness.connect(alex)
        booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
        await sam_app.expect("offer", request_id=booked["id"], kind="priority")
        private_redis.kill()
        await harness.wait_for(booked["id"], timeout=3, phase="broadcast")
        await _restart_after(private_redis, 0.5)
        offer = await alex_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=CONVERGES_WITHIN_S)
        assert offer["attempt"] == 2
        await alex_app.send({"type": "accept", "request_id": booked["id"]})
        await alex_app.expect("accepted", request_id=booked["id"])
        await asyncio.sleep(0.3)
        assert alex_app.count("offer", request_id=booked["id"], kind="broadcast") == 1
        kinds = [e["kind"] for e in await harness.events(booked["id"])]
        assert kinds.count("fell_back") == 1 and kinds.count("accepted") == 1


async def test_a_decline_while_redis_is_down_reaches_its_own_process_at_once_and_the_others_once_it_is_back(
    own_settings: Settings, private_redis: EmbeddedRedis
) -> None:
    """A process writes its own sockets' frames itself, so they do not wait for Redis: the broadcast after the
    favorite's decline is on the socket beside theirs while Redis is dead, and on another process's socket once it
    is back. Each gets it once, though the retried delivery publishes it again, and it is accepted once."""
    async with start_server(own_settings) as harness:
        other = await spawn_server(own_settings)
        try:
            sam = await harness.create_mechanic("Sam")
            alex = await harness.create_mechanic("Alex")
            bo = await harness.create_mechanic("Bo")
            sam_app = await harness.connect(sam)
            alex_app = await harness.connect(alex)
            bo_app = await harness.connect(bo, ws_url=other.ws_url)
            booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
            await sam_app.expect("offer", request_id=booked["id"], kind="priority")
            private_redis.kill()
            await sam_app.send({"type": "decline", "request_id": booked["id"]})
            await alex_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=3)
            assert bo_app.count("offer", request_id=booked["id"]) == 0
            await _restart_after(private_redis, 0.5)
            await bo_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=CONVERGES_WITHIN_S)
            await bo_app.send({"type": "accept", "request_id": booked["id"]})
            await bo_app.expect("accepted", request_id=booked["id"])
            revoked = await alex_app.expect("offer_revoked", request_id=booked["id"], timeout=CONVERGES_WITHIN_S)
            assert revoked["reason"] == "taken"
            assert alex_app.count("offer", request_id=booked["id"]) == 1
            assert bo_app.count("offer", request_id=booked["id"]) == 1
            assert sam_app.count("offer", request_id=booked["id"], kind="broadcast") == 0
            kinds = [e["kind"] for e in await harness.events(booked["id"])]
            assert kinds.count("fell_back") == 1 and kinds.count("accepted") == 1
        finally:
            stop_server(other)


async def test_a_delivered_change_is_settled_and_never_delivered_again(harness: Harness, settings: Settings) -> None:
    """The normal path: a booking and an accept are published at once, and their marks cleared in the next batch
    (a mark left behind would be re-delivered by every process after the grace period)."""
    alex = await harness.create_mechanic("Alex")
    alex_app = await harness.connect(alex)
    booked = await harness.book(**BROADCAST)
    await alex_app.expect("offer", request_id=booked["id"])
    database = open_database(settings.database_url)
    await database.connect()
    try:
        requests = Requests(database)
        await _until_settled(requests, booked["id"])
        await alex_app.send({"type": "accept", "request_id": booked["id"]})
        await alex_app.expect("accepted", request_id=booked["id"])
        await _until_settled(requests, booked["id"])
    finally:
        await database.disconnect()


async def _until_settled(requests: Requests, request_id: str, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await requests.get(request_id)).owed_at is not None:
        assert time.monotonic() < deadline, f"request {request_id} still marked owed after {timeout_s}s"
        await asyncio.sleep(0.05)


async def test_a_change_left_owed_by_a_process_that_died_is_delivered_by_another(
    settings: Settings, redis: Redis
) -> None:
    """A process commits a booking and dies before publishing it (here: services that store it and never run):
    a running process delivers it to the socket it holds, though its own pub/sub never broke."""
    async with start_server(settings) as harness:
        alex = await harness.create_mechanic("Alex")
        alex_app = await harness.connect(alex)
        dead = await open_services(settings)
        try:
            new = NewRequest(customer_id=harness.customer_id, customer_name="Jordan", **BROADCAST)
            stored = await dead.dispatcher.insert(await dead.dispatcher.prepare(new))
            assert stored is not None and stored.owed_at is not None
            await alex_app.expect("offer", request_id=stored.id, timeout=GRACE_S + 3)
            await _until_settled(dead.dispatcher.requests, stored.id)
        finally:
            await dead.database.disconnect()
            await dead.redis.aclose()


async def test_a_server_killed_mid_burst_leaves_every_keyed_booking_retryable(settings: Settings) -> None:
    """50 keyed bookings in flight, the server SIGKILLed among them and restarted: every key, retried, answers
    exactly one booking (the stored one, or a new one if none was stored), never 409 'in use'."""
    first = await spawn_server(settings)
    keys = [f"burst-{i}" for i in range(50)]
    async with httpx.AsyncClient(timeout=5) as http:
        harness = Harness(settings, first.base_url, first.ws_url, http, "")
        headers = lambda key: {**harness.customer, "Idempotency-Key": key}  # noqa: E731

        async def book(base_url: str, key: str) -> httpx.Response | None:
            try:
                return await http.post(f"{base_url}/api/session-requests", json=BROADCAST, headers=headers(key))
            except httpx.TransportError:
                return None

        in_flight = [asyncio.create_task(book(first.base_url, key)) for key in keys]
        await asyncio.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)
        first_answers = await asyncio.gather(*in_flight)
        stop_server(first)
        second = await spawn_server(settings)
        try:
            retries = [await book(second.base_url, key) for key in keys]
            for key, retry in zip(keys, retries, strict=True):
                assert retry is not None and retry.status_code == 201, (key, retry and retry.text)
            again = [await book(second.base_url, key) for key in keys]
            assert [r.json()["id"] for r in again if r] == [r.json()["id"] for r in retries if r]
            for answer, retry in zip(first_answers, retries, strict=True):
                if answer is not None and answer.status_code == 201 and retry is not None:
                    assert retry.json()["id"] == answer.json()["id"]
            harness.base_url = second.base_url
            stored = await http.get(f"{second.base_url}/api/customer/session-requests", headers=harness.customer)
            assert len(stored.json()["requests"]) == len(keys)
        finally:
            stop_server(second)
