"""Web Push to the favorite's devices, checked by a push-service stand-in that verifies VAPID and decrypts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

import pytest

from api.auth import Role
from api.settings import Settings
from base.database import open_database
from dispatch.pushes import PushSubscriptions
from tests.helpers import Harness, ServerProcess, spawn_server, start_server, stop_server
from tests.push_standin import PushStandIn, push_standin

TITLE = "Priority Request from Your Favorite Customer!"


@pytest.fixture
def push_settings(settings: Settings) -> Settings:
    return replace(settings, web_push=True, push_endpoints_may_be_loopback_http=True, push_retry_base_s=0.05)


@pytest.fixture
async def standin(push_settings: Settings) -> AsyncIterator[PushStandIn]:
    async with push_standin(push_settings.vapid_public_key) as running:
        yield running


@pytest.fixture
async def pushing(push_settings: Settings, standin: PushStandIn, redis: object) -> AsyncIterator[Harness]:
    async with start_server(push_settings) as harness:
        yield harness


async def _subscribe(harness: Harness, mechanic_id: str, subscription: dict[str, object]) -> int:
    token = harness.token(Role.MECHANIC, mechanic_id)
    response = await harness.http.post(
        "/api/mechanic/push-subscriptions", json=subscription, headers=harness.auth(token)
    )
    assert response.status_code in (200, 201), response.text
    return response.status_code


async def _pushed_events(harness: Harness, request_id: str) -> list[str]:
    return [e["detail"] for e in await harness.events(request_id) if e["kind"] == "pushed"]


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_subscriptions_are_validated_and_idempotent(pushing: Harness, standin: PushStandIn) -> None:
    key = (await pushing.http.get("/api/push/vapid-public-key")).json()
    assert key == {"enabled": True, "public_key": pushing.settings.vapid_public_key}
    sam = await pushing.create_mechanic("Sam")
    _, device = standin.device()
    subscription = device.subscription()
    assert await _subscribe(pushing, sam, subscription) == 201
    assert await _subscribe(pushing, sam, subscription) == 200
    mechanic = pushing.auth(pushing.token(Role.MECHANIC, sam))
    bad = [
        {**subscription, "endpoint": "http://push.example.com/abc"},
        {**subscription, "endpoint": "ftp://push.example.com/abc"},
        {**subscription, "keys": {"p256dh": "short", "auth": subscription["keys"]["auth"]}},  # type: ignore[index]
        {**subscription, "keys": {"p256dh": subscription["keys"]["p256dh"], "auth": "%%%"}},  # type: ignore[index]
        {"endpoint": subscription["endpoint"]},
    ]
    for body in bad:
        response = await pushing.http.post("/api/mechanic/push-subscriptions", json=body, headers=mechanic)
        assert response.status_code == 422 and response.json()["error"] == "validation_error", body
    as_customer = await pushing.http.post(
        "/api/mechanic/push-subscriptions", json=subscription, headers=pushing.customer
    )
    assert as_customer.status_code == 403
    gone = await pushing.http.request(
        "DELETE", "/api/mechanic/push-subscriptions", json={"endpoint": device.endpoint}, headers=mechanic
    )
    assert gone.status_code == 204
    await pushing.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await asyncio.sleep(0.3)
    assert standin.attempts == {}


async def test_https_endpoints_only_unless_loopback_is_allowed(settings: Settings, redis: object) -> None:
    async with start_server(replace(settings, web_push=True)) as harness:
        sam = await harness.create_mechanic("Sam")
        async with push_standin(harness.settings.vapid_public_key) as standin:
            _, device = standin.device()
            response = await harness.http.post(
                "/api/mechanic/push-subscriptions",
                json=device.subscription(),
                headers=harness.auth(harness.token(Role.MECHANIC, sam)),
            )
        assert response.status_code == 422 and "https" in response.json()["message"]


async def test_notify_and_wait_pushes_once_per_device_and_the_socket_still_offers(
    pushing: Harness, standin: PushStandIn
) -> None:
    sam = await pushing.create_mechanic("Sam")
    phone_id, phone = standin.device()
    laptop_id, laptop = standin.device()
    await _subscribe(pushing, sam, phone.subscription())
    await _subscribe(pushing, sam, laptop.subscription())
    booked = await pushing.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await _until(lambda: len(standin.received) == 2)
    assert standin.refused == []
    assert {r.device for r in standin.received} == {phone_id, laptop_id}
    for received in standin.received:
        assert received.payload == {
            "title": TITLE,
            "body": "Jordan wants to book with you",
            "request_id": booked["id"],
            "expires_at": booked["priority_deadline"],
            "url": f"/console/mechanic/?offer={booked['id']}",
        }
        assert received.urgency == "high" and received.topic == booked["id"].replace("-", "")
        window_left = datetime.fromisoformat(booked["priority_deadline"]) - datetime.fromisoformat(booked["created_at"])
        assert 0 < received.ttl <= window_left.total_seconds()
    assert await _pushed_events(pushing, booked["id"]) == ["sent to 127.0.0.1", "sent to 127.0.0.1"]
    sam_app = await pushing.connect(sam)
    await sam_app.expect("offer", request_id=booked["id"], kind="priority")
    await asyncio.sleep(0.3)
    assert len(standin.received) == 2
    metrics = (await pushing.http.get("/metrics", headers=pushing.admin)).text
    assert 'pushes_sent_total{outcome="sent"}' in metrics


async def test_a_gone_subscription_is_removed(pushing: Harness, standin: PushStandIn) -> None:
    sam = await pushing.create_mechanic("Sam")
    device_id, device = standin.device()
    standin.answers[device_id] = [410]
    await _subscribe(pushing, sam, device.subscription())
    first = await pushing.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await _until(lambda: standin.attempts.get(device_id) == 1)
    await asyncio.sleep(0.2)
    assert (await _pushed_events(pushing, first["id"])) == ["subscription removed: 127.0.0.1 answered HTTP 410"]
    pushing.customer_id = "0f4a2b1c-0000-4000-8000-00000000a001"
    await pushing.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await asyncio.sleep(0.3)
    assert standin.attempts[device_id] == 1  # never tried again


async def test_a_failing_push_service_is_retried_twice_then_logged(pushing: Harness, standin: PushStandIn) -> None:
    sam = await pushing.create_mechanic("Sam")
    flaky_id, flaky = standin.device()
    down_id, down = standin.device()
    standin.answers[flaky_id] = [500]
    standin.answers[down_id] = [500, 503, 500]
    await _subscribe(pushing, sam, flaky.subscription())
    await _subscribe(pushing, sam, down.subscription())
    booked = await pushing.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await _until(lambda: standin.attempts.get(down_id) == 3 and len(standin.received) == 1)
    await asyncio.sleep(0.3)
    assert standin.attempts == {flaky_id: 2, down_id: 3}
    assert [r.device for r in standin.received] == [flaky_id]
    events = sorted(await _pushed_events(pushing, booked["id"]))
    assert events == ["failed after 3 tries to 127.0.0.1: HTTP 500", "sent to 127.0.0.1"]
    metrics = (await pushing.http.get("/metrics", headers=pushing.admin)).text
    assert 'pushes_sent_total{outcome="failed"}' in metrics


@pytest.mark.parametrize("phone_fault", ["hangs", "answers 500"])
async def test_a_failing_or_hanging_device_never_delays_another_devices_push(
    push_settings: Settings, standin: PushStandIn, redis: object, phone_fault: str
) -> None:
    """The phone's push service hangs (accepts and never answers) or answers 500 (retried after a backoff):
    the laptop's push is sent beside the phone's first attempt, not after its timeout or its retries."""
    settings = replace(push_settings, push_retry_base_s=0.5, push_timeout_s=1.0)
    async with start_server(settings) as harness:
        sam = await harness.create_mechanic("Sam")
        phone_id, phone = standin.device()
        laptop_id, laptop = standin.device()
        if phone_fault == "hangs":
            standin.hanging.add(phone_id)
        else:
            standin.answers[phone_id] = [500, 500, 500]
        await _subscribe(harness, sam, phone.subscription())
        await _subscribe(harness, sam, laptop.subscription())
        booked = await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
        await _until(lambda: [r.device for r in standin.received] == [laptop_id], timeout=3.0)
        gap_s = abs(standin.first_attempt_at[laptop_id] - standin.first_attempt_at[phone_id])
        assert gap_s < 0.1, f"the laptop's push was {gap_s:.3f}s apart from the phone's"
        if phone_fault == "hangs":
            # Each attempt is cut at PUSH_TIMEOUT_S: the hanging device fails after its three tries.
            await _until(lambda: standin.attempts[phone_id] == 3, timeout=12)
            await _until(lambda: len(standin.received) == 1, timeout=1)
        events = await _pushed_events(harness, booked["id"])
        assert "sent to 127.0.0.1" in events


@pytest.fixture
async def processes(pushing: Harness) -> AsyncIterator[list[ServerProcess]]:
    spawned = await asyncio.gather(spawn_server(pushing.settings), spawn_server(pushing.settings))
    yield list(spawned)
    for process in spawned:
        stop_server(process)


async def test_three_processes_push_once_when_the_favorite_leaves_before_acking(
    pushing: Harness, standin: PushStandIn, processes: list[ServerProcess]
) -> None:
    """The favorite got the priority offer on one process and went offline without acking: every process's keeper
    sees the ack overdue, the offer is resent and resent again, and each device is pushed to exactly once."""
    sam = await pushing.create_mechanic("Sam")
    device_id, device = standin.device()
    await _subscribe(pushing, sam, device.subscription())
    sam_app = await pushing.connect(sam, auto_ack=False, ws_url=processes[0].ws_url)
    response = await pushing.http.post(
        f"{processes[1].base_url}/api/session-requests",
        json={"session_type": "video", "plan_code": "standard", "routing": "priority", "preferred_mechanic_id": sam},
        headers=pushing.customer,
    )
    booked = response.json()
    await sam_app.expect("offer", request_id=booked["id"])
    assert standin.attempts == {}  # online: the socket carries it, no push
    await sam_app.close()
    await pushing.wait_for(booked["id"], timeout=10, phase="broadcast")
    await asyncio.sleep(0.5)
    kinds = [e["kind"] for e in await pushing.events(booked["id"])]
    assert kinds.count("resent") == pushing.settings.offer_resends
    assert standin.attempts == {device_id: 1} and len(standin.received) == 1 and standin.refused == []
    assert await _pushed_events(pushing, booked["id"]) == ["sent to 127.0.0.1"]


PRIVATE_ENDPOINTS = [
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.7/push",
    "https://192.168.1.1/push",
    "https://172.16.4.2:8443/push",
    "https://100.64.0.1/push",
    "https://127.0.0.1/push",
    "https://0.0.0.0/push",
    "https://localhost/push",
    "https://push.localhost/x",
    "https://[::1]/push",
    "https://[fe80::1]/push",
    "https://[::ffff:10.0.0.1]/push",
    "https://[fd00::1]/push",
    "https://metadata.google.internal/computeMetadata/v1",
    "https://printer.local/push",
    "https://intranet/push",
]


async def test_push_endpoints_inside_a_network_are_refused_at_registration(
    push_settings: Settings, standin: PushStandIn, redis: object
) -> None:
    """A mechanic cannot make the server send requests into its own network: private, loopback, link-local and
    internal names are refused (loopback only where WEB_PUSH_ALLOW_LOOPBACK_HTTP allows a stand-in)."""
    async with start_server(replace(push_settings, push_endpoints_may_be_loopback_http=False)) as harness:
        sam = await harness.create_mechanic("Sam")
        keys = standin.device()[1].subscription()["keys"]
        mechanic = harness.auth(harness.token(Role.MECHANIC, sam))
        for endpoint in PRIVATE_ENDPOINTS:
            body = {"endpoint": endpoint, "keys": keys}
            response = await harness.http.post("/api/mechanic/push-subscriptions", json=body, headers=mechanic)
            assert response.status_code == 422, (endpoint, response.text)
            assert "public internet" in response.json()["message"]
        public = {"endpoint": "https://8.8.8.8/push/abc", "keys": keys}
        saved = await harness.http.post("/api/mechanic/push-subscriptions", json=public, headers=mechanic)
        assert saved.status_code == 201


async def test_only_allowed_push_hosts_when_the_operator_names_them(push_settings: Settings, redis: object) -> None:
    settings = replace(push_settings, push_allowed_hosts=("*.push.example.com",))
    async with start_server(settings) as harness, push_standin(settings.vapid_public_key) as standin:
        sam = await harness.create_mechanic("Sam")
        keys = standin.device()[1].subscription()["keys"]
        mechanic = harness.auth(harness.token(Role.MECHANIC, sam))
        elsewhere = {"endpoint": "https://8.8.8.8/push", "keys": keys}
        refused = await harness.http.post("/api/mechanic/push-subscriptions", json=elsewhere, headers=mechanic)
        assert refused.status_code == 422 and "WEB_PUSH_ALLOWED_HOSTS" in refused.json()["message"]


async def test_a_push_is_checked_again_when_sent(push_settings: Settings, standin: PushStandIn, redis: object) -> None:
    """A subscription stored before the registration check (or whose name now points inside) is refused when
    sent: the resolver the pushes connect through keeps public addresses only."""
    settings = replace(push_settings, push_endpoints_may_be_loopback_http=False, push_retry_base_s=0.01)
    async with start_server(settings) as harness:
        sam = await harness.create_mechanic("Sam")
        device_id, device = standin.device()
        database = open_database(settings.database_url)
        await database.connect()
        try:
            subscriptions = PushSubscriptions(database)
            subscription = device.subscription()
            by_name = str(subscription["endpoint"]).replace("127.0.0.1", "localhost")
            keys: dict[str, str] = subscription["keys"]  # type: ignore[assignment]
            await subscriptions.save(sam, by_name, keys["p256dh"], keys["auth"])
            await subscriptions.save(sam, str(subscription["endpoint"]), keys["p256dh"], keys["auth"])
        finally:
            await database.disconnect()
        booked = await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
        deadline = asyncio.get_running_loop().time() + 5
        while len(await _pushed_events(harness, booked["id"])) < 2:
            assert asyncio.get_running_loop().time() < deadline, "pushes not attempted"
            await asyncio.sleep(0.1)
        assert standin.attempts == {}, "a push reached a loopback address"
        assert all("refused" in e or "failed" in e for e in await _pushed_events(harness, booked["id"]))
        assert device_id not in standin.first_attempt_at


async def test_a_push_endpoint_belongs_to_the_mechanic_who_registered_it(
    pushing: Harness, standin: PushStandIn
) -> None:
    """Another mechanic who knows the URL can neither take it over (409) nor delete it."""
    sam, alex = await pushing.create_mechanic("Sam"), await pushing.create_mechanic("Alex")
    device_id, device = standin.device()
    await _subscribe(pushing, sam, device.subscription())
    as_alex = pushing.auth(pushing.token(Role.MECHANIC, alex))
    taken = await pushing.http.post("/api/mechanic/push-subscriptions", json=device.subscription(), headers=as_alex)
    assert taken.status_code == 409 and taken.json()["error"] == "push_endpoint_taken"
    deleted = await pushing.http.request(
        "DELETE", "/api/mechanic/push-subscriptions", json={"endpoint": device.endpoint}, headers=as_alex
    )
    assert deleted.status_code == 204
    await pushing.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await _until(lambda: [r.device for r in standin.received] == [device_id])
