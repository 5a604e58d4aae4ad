"""Live favorites (`GET /api/customer/favorites/stream`) and conditional polls (`ETag`, 304): through a real
server, real sockets and a real HTTP client."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import replace

import httpx
import jsonschema

from api.auth import Principal, Role, mint_stream_ticket, mint_token
from api.contract import ASYNCAPI
from api.settings import Settings
from scripts.embedded_redis import EmbeddedRedis
from tests.helpers import Harness, ServerSentEvent, favorites_stream, spawn_server, start_server, stop_server


def _documented(event: ServerSentEvent) -> ServerSentEvent:
    """The event, checked against its payload schema in /asyncapi.json."""
    components = ASYNCAPI["components"]
    schema = {**components["messages"][f"stream_{event.event}"]["payload"], "components": components}
    jsonschema.Draft202012Validator(schema).validate(event.data)
    return event


async def _favorite(harness: Harness, provider_id: str, provider_type: str = "independent") -> None:
    response = await harness.http.post(
        "/api/customer/favorites",
        json={"provider_id": provider_id, "provider_type": provider_type},
        headers=harness.customer,
    )
    assert response.status_code in (200, 201), response.text


async def test_the_stream_starts_with_a_snapshot_then_sends_each_transition(harness: Harness) -> None:
    """The snapshot lists the favorites as GET /api/customer/favorites does; a mechanic coming online, a workshop
    member coming online and a mechanic going offline each arrive as a `favorite` event, with their new status."""
    sam = await harness.create_mechanic("Sam")
    ana = await harness.create_mechanic("Ana")
    patel = await harness.create_workshop("Patel Motors", ana)
    await _favorite(harness, sam)
    await _favorite(harness, patel, "workshop")
    listed = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]

    async with favorites_stream(harness.http, harness.customer) as stream:
        snapshot = _documented(await stream.next())
        assert snapshot.event == "snapshot"
        assert snapshot.data == {"favorites": listed}
        assert snapshot.id

        sam_app = await harness.connect(sam)
        online = await stream.until("favorite", provider_id=sam)
        assert online.data["is_online"] is True and online.data["name"] == "Sam"

        await harness.connect(ana)
        workshop = _documented(await stream.until("favorite", provider_id=patel))
        assert workshop.data["is_online"] is True and workshop.data["online_members"] == ["Ana"]

        await sam_app.close()
        offline = await stream.until("favorite", provider_id=sam)
        assert offline.data["is_online"] is False and offline.data["last_seen"] is not None
        assert offline.id != snapshot.id


async def test_favorites_added_removed_and_deleted_arrive_as_events(harness: Harness) -> None:
    """Adding a favorite (from any device) sends it; removing one sends `removed` with reason `removed`; a
    mechanic deleted from the platform, `deleted`."""
    sam = await harness.create_mechanic("Sam")
    lee = await harness.create_mechanic("Lee")
    await _favorite(harness, sam)
    async with favorites_stream(harness.http, harness.customer) as stream:
        await stream.until("snapshot")
        await _favorite(harness, lee)
        added = await stream.until("favorite", provider_id=lee)
        assert added.data["name"] == "Lee" and added.data["is_online"] is False

        removed = await harness.http.delete(f"/api/customer/favorites/{lee}", headers=harness.customer)
        assert removed.status_code == 204
        gone = _documented(await stream.until("removed", provider_id=lee))
        assert gone.data == {"provider_id": lee, "reason": "removed"}

        deleted = await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)
        assert deleted.status_code == 204, deleted.text
        assert (await stream.until("removed", provider_id=sam)).data == {"provider_id": sam, "reason": "deleted"}


async def test_a_reconnect_with_last_event_id_gets_only_what_changed_meanwhile(harness: Harness) -> None:
    """Resuming from the last id: the favorite whose status changed while the stream was away, no snapshot, and
    nothing for the one that did not change. An id the server cannot resume from gets a snapshot; so does one
    from before the customer's favorites changed."""
    sam = await harness.create_mechanic("Sam")
    lee = await harness.create_mechanic("Lee")
    await _favorite(harness, sam)
    await _favorite(harness, lee)
    async with favorites_stream(harness.http, harness.customer) as stream:
        await stream.until("snapshot")
        await asyncio.sleep(0.1)
        last_event_id = stream.last_event_id

    await harness.connect(sam)
    await harness.wait_for_status(sam, is_online=True)
    async with favorites_stream(harness.http, {**harness.customer, "Last-Event-ID": last_event_id}) as resumed:
        event = await resumed.next()
        assert event.event == "favorite" and event.data["provider_id"] == sam and event.data["is_online"] is True
        await resumed.nothing_within(0.3)
        caught_up = resumed.last_event_id

    async with favorites_stream(harness.http, harness.customer, last_event_id=caught_up) as quiet:
        await quiet.nothing_within(0.3)  # nothing changed: nothing sent, not even a snapshot

    process = caught_up.split(".")[0]
    for unknown in ("0.0", "not-an-id", f"{process}.999999999", f"{process}.{'9' * 5000}", f"{process}.١٢"):
        async with favorites_stream(harness.http, harness.customer, last_event_id=unknown) as fresh:
            assert (await fresh.next()).event == "snapshot"

    await harness.http.delete(f"/api/customer/favorites/{lee}", headers=harness.customer)
    async with favorites_stream(harness.http, {**harness.customer, "Last-Event-ID": caught_up}) as after_removal:
        snapshot = await after_removal.next()
        assert snapshot.event == "snapshot"
        assert [f["provider_id"] for f in snapshot.data["favorites"]] == [sam]


async def test_an_idle_stream_gets_keepalive_comments_that_carry_its_position(harness: Harness) -> None:
    async with favorites_stream(harness.http, harness.customer) as stream:
        snapshot = await stream.until("snapshot")
        await asyncio.sleep(harness.settings.stream_keepalive_s * 2.5)
        assert stream.comments >= 2
        assert stream.last_event_id.split(".")[0] == snapshot.id.split(".")[0]


async def test_eventsource_clients_authenticate_with_a_one_minute_ticket(harness: Harness) -> None:
    """`?ticket=` opens the stream; a ticket is no bearer token and a bearer token no ticket; an expired ticket, a
    mechanic's ticket and a mechanic's token are refused."""
    response = await harness.http.post("/api/customer/stream-tickets", headers=harness.customer)
    assert response.status_code == 201, response.text
    ticket = response.json()["ticket"]
    assert response.json()["expires_in_s"] == 60
    async with favorites_stream(harness.http, ticket=ticket) as stream:
        assert (await stream.next()).event == "snapshot"

    as_bearer = await harness.http.get("/api/customer/favorites", headers=harness.auth(ticket))
    assert as_bearer.status_code == 401
    bearer = harness.customer["Authorization"].removeprefix("Bearer ")
    customer = Principal(sub=harness.customer_id, role=Role.CUSTOMER, name=None)
    expired = mint_token(harness.secret, sub=harness.customer_id, role=Role.CUSTOMER, ttl_s=-5)
    mechanic_ticket = mint_stream_ticket(harness.secret, replace(customer, role=Role.MECHANIC))
    for params, headers, status in (
        ({"ticket": bearer}, {}, 401),
        ({"ticket": expired}, {}, 401),
        ({"ticket": "nonsense"}, {}, 401),
        ({"ticket": mechanic_ticket}, {}, 403),
        ({}, harness.auth(harness.token(Role.MECHANIC)), 403),
        ({}, {}, 401),
    ):
        refused = await harness.http.get("/api/customer/favorites/stream", params=params, headers=headers)
        assert refused.status_code == status, (params, refused.text)
        assert refused.json()["error"] == ("unauthorized" if status == 401 else "forbidden")


async def test_a_customer_may_hold_ten_streams_at_once(harness: Harness) -> None:
    streams = [favorites_stream(harness.http, harness.customer) for _ in range(10)]
    for stream in streams:
        await stream.__aenter__()
    try:
        refused = await harness.http.get("/api/customer/favorites/stream", headers=harness.customer)
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_streams"
        metrics = (await harness.http.get("/metrics", headers=harness.admin)).text
        assert "favdispatch_favorites_streams 10.0" in metrics  # this process's only server
    finally:
        for context in streams:
            await context.__aexit__(None, None, None)
    async with favorites_stream(harness.http, harness.customer) as again:  # closed streams are let go of
        assert (await again.next()).event == "snapshot"


async def test_a_change_made_through_another_process_reaches_the_stream(settings: Settings, harness: Harness) -> None:
    """Favorites added through one server process and a mechanic connected to it reach a stream held by
    another: what one process commits, every process's streams hear."""
    sam = await harness.create_mechanic("Sam")
    async with start_server(settings) as other:
        other.customer_id = harness.customer_id
        async with favorites_stream(harness.http, harness.customer) as stream:
            await stream.until("snapshot")
            await _favorite(other, sam)
            assert (await stream.until("favorite", provider_id=sam)).data["is_online"] is False
            await other.connect(sam)
            assert (await stream.until("favorite", provider_id=sam)).data["is_online"] is True


async def test_a_shutting_down_server_ends_its_streams_at_once(settings: Settings) -> None:
    """SIGTERM ends an open stream cleanly (its client reconnects elsewhere) long before the graceful-shutdown
    timeout, which a stream would otherwise hold the process for."""
    server = await spawn_server(settings, GRACEFUL_SHUTDOWN_S="30", STREAM_KEEPALIVE_S="30")
    try:
        token = mint_token(str(settings.jwt_secret), sub=str(uuid.uuid4()), role=Role.CUSTOMER)
        customer = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base_url, timeout=40) as http:
            async with favorites_stream(http, customer) as stream:
                await stream.until("snapshot")
                started = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(stream.ended.wait(), 10)
        await asyncio.to_thread(server.process.wait, 10)  # exited, not waiting out the 30 s
        assert time.monotonic() - started < 10
    finally:
        stop_server(server)


async def test_status_polls_answer_304_while_nothing_changed(harness: Harness) -> None:
    """A poll that sends back the ETag it got is answered 304 with no body until the status changes: the single
    status, the batch and the favorites list."""
    sam = await harness.create_mechanic("Sam")
    await _favorite(harness, sam)
    urls = (f"/api/mechanics/{sam}/status", f"/api/mechanics/status?ids={sam}", "/api/customer/favorites")
    tags = {}
    for url in urls:
        first = await harness.http.get(url, headers=harness.customer)
        assert first.status_code == 200 and first.headers["etag"].startswith('W/"')
        tags[url] = first.headers["etag"]
        again = await harness.http.get(url, headers={**harness.customer, "If-None-Match": tags[url]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == tags[url]
        other = await harness.http.get(url, headers={**harness.customer, "If-None-Match": 'W/"0", "x"'})
        assert other.status_code == 200

    await harness.connect(sam)
    await harness.wait_for_status(sam, is_online=True)
    for url in urls:
        changed = await harness.http.get(url, headers={**harness.customer, "If-None-Match": tags[url]})
        assert changed.status_code == 200, url
        assert changed.headers["etag"] != tags[url]
        online = await harness.http.get(url, headers={**harness.customer, "If-None-Match": changed.headers["etag"]})
        assert online.status_code == 304, "an online mechanic's ever-moving last_seen does not change the tag"


async def test_a_favorite_added_while_redis_is_down_reaches_every_processs_stream(
    settings: Settings, private_redis: EmbeddedRedis
) -> None:
    """The add commits with Redis dead: the stream on the same process hears it at once, and the other process's
    once Redis is back (the announcement is retried, and a reconnected stream re-reads its favorites)."""
    own = replace(settings, redis_url=private_redis.url)
    async with start_server(own) as first, start_server(own) as second:
        second.customer_id = first.customer_id
        sam = await first.create_mechanic("Sam")
        async with (
            favorites_stream(first.http, first.customer) as here,
            favorites_stream(second.http, second.customer) as there,
        ):
            await here.until("snapshot")
            await there.until("snapshot")
            private_redis.kill()
            added = await first.http.post("/api/customer/favorites", json={"provider_id": sam}, headers=first.customer)
            assert added.status_code == 201, added.text
            assert (await here.until("favorite", provider_id=sam)).data["name"] == "Sam"
            await asyncio.sleep(0.5)
            await asyncio.to_thread(private_redis.start)
            assert (await there.until("favorite", provider_id=sam, timeout=8)).data["name"] == "Sam"
