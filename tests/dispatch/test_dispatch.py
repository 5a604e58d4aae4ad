"""Priority dispatch with timed fallback, over real sockets, Redis and database, in one server process."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime

import pytest

from api.auth import Role
from api.settings import Settings
from tests.helpers import Harness, start_server


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _kinds(harness: Harness, request_id: str) -> list[str]:
    return [e["kind"] for e in await harness.events(request_id)]


async def test_online_favorite_gets_the_priority_offer_and_accepts(harness: Harness) -> None:
    """An online favorite alone gets a priority offer; their accept assigns the request to them."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    assert booked["status"] == "pending" and booked["phase"] == "priority"
    assert booked["routing_type"] == "priority_broadcast"
    assert booked["message"] == "Waiting for Sam…"
    offer = await sam_app.expect("offer", request_id=booked["id"])
    assert offer["kind"] == "priority" and offer["customer_name"] == "Jordan" and offer["attempt"] == 1
    assert offer["workshop_name"] is None  # a favorite mechanic's own offer names no workshop
    assert offer["session_type"] == "video" and _ts(offer["expires_at"]) == _ts(booked["priority_deadline"])
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await sam_app.expect("accepted", request_id=booked["id"])
    current = await harness.wait_for(booked["id"], status="accepted")
    assert current["mechanic_id"] == sam and current["mechanic_name"] == "Sam" and current["phase"] is None
    assert current["priority_notified_at"] is not None and current["accepted_at"] is not None
    assert current["fallback_broadcast_at"] is None
    assert alex_app.count("offer") == 0
    assert await _kinds(harness, booked["id"]) == ["created", "offered", "acked", "accepted"]


async def test_notify_and_wait_delivers_on_connect(harness: Harness) -> None:
    """An offline favorite gets the offer the moment they connect within the window."""
    sam = await harness.create_mechanic("Sam")
    booked = await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    assert booked["priority_notified_at"] is None
    assert "offline" in booked["message"]
    sam_app = await harness.connect(sam)
    offer = await sam_app.expect("offer", request_id=booked["id"])
    assert offer["kind"] == "priority"
    current = await harness.request(booked["id"])
    assert current["priority_notified_at"] is not None and current["message"] == "Waiting for Sam…"
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await harness.wait_for(booked["id"], status="accepted", mechanic_id=sam)


async def test_a_favorite_who_never_came_online_is_not_said_to_have_ignored_it(harness: Harness) -> None:
    """Notify & wait for an offline favorite who stays away: the customer reads "wasn't online", not "didn't
    respond in time" (they were never offered it)."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    await alex_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=5)
    assert (await harness.request(booked["id"]))["message"] == "Sam wasn't online. Finding you another mechanic…"


async def test_window_expiry_falls_back_to_everyone(harness: Harness) -> None:
    """When the favorite lets the window pass, every connected mechanic gets a broadcast offer."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer", kind="priority")
    broadcast = await alex_app.expect("offer", request_id=booked["id"], timeout=5)
    assert broadcast["kind"] == "broadcast" and broadcast["attempt"] == 2
    await sam_app.expect("offer_revoked", reason="expired")
    await sam_app.expect("offer", kind="broadcast")
    current = await harness.request(booked["id"])
    assert current["phase"] == "broadcast" and current["fallback_broadcast_at"] is not None
    assert _ts(current["fallback_broadcast_at"]) >= _ts(current["priority_deadline"])
    assert "didn't respond in time" in current["message"]
    await alex_app.send({"type": "accept", "request_id": booked["id"]})
    await alex_app.expect("accepted")
    await sam_app.expect("offer_revoked", reason="taken")
    events = await harness.events(booked["id"])
    assert ("fell_back", "window") in [(e["kind"], e["detail"]) for e in events]


async def test_decline_falls_back_at_once_and_is_not_offered_again(harness: Harness) -> None:
    """A favorite's decline broadcasts at once, to everyone but them."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer")
    await sam_app.send({"type": "decline", "request_id": booked["id"]})
    await sam_app.expect("declined", request_id=booked["id"])
    await alex_app.expect("offer", kind="broadcast", timeout=1)
    current = await harness.request(booked["id"])
    assert current["phase"] == "broadcast" and current["fallback_broadcast_at"] is not None
    # A second device of Sam connecting now is not offered it, and Sam cannot accept it.
    sam_tablet = await harness.connect(sam)
    await sam_tablet.send({"type": "accept", "request_id": booked["id"], "attempt": 2})
    error = await sam_tablet.expect("error")
    assert error["code"] == "offer_unavailable" and error["request_id"] == booked["id"]
    assert sam_tablet.count("offer") == 0 and sam_app.count("offer") == 1


async def test_missed_acks_resend_twice_then_fall_back(settings: Settings) -> None:
    """A favorite whose app never acks gets two resends, then the request is broadcast (a window long enough that
    the missed acks, not the window, end the priority phase even on a busy machine)."""
    async with start_server(replace(settings, priority_window_s=6.0)) as harness:
        await _missed_acks(harness)


async def _missed_acks(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam, auto_ack=False)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await alex_app.expect("offer", request_id=booked["id"], timeout=5)
    priority_offers = [m for m in sam_app.received if m["type"] == "offer" and m["kind"] == "priority"]
    assert len(priority_offers) == 3  # the offer and two resends
    assert len({o["offer_id"] for o in priority_offers}) == 1
    events = await harness.events(booked["id"])
    # The whole log, in order, each row with the mechanic and attempt it concerns (written by the same statement
    # as the change on PostgreSQL, by the same transaction on SQLite).
    assert [(e["kind"], e["mechanic_id"], e["attempt"], e["detail"]) for e in events][1:] == [
        ("offered", sam, 1, "priority"),
        ("resent", sam, 1, "resend 1"),
        ("resent", sam, 1, "resend 2"),
        ("fell_back", sam, 2, "missed_acks"),
        ("broadcast", None, 2, None),
    ]


async def test_an_ack_stops_the_resends(harness: Harness) -> None:
    """An acked offer is not resent."""
    sam = await harness.create_mechanic("Sam")
    sam_app = await harness.connect(sam)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer")
    await asyncio.sleep(1.5)
    assert sam_app.count("offer", request_id=booked["id"]) == 1


async def test_accept_race_among_fifty_mechanics_has_one_winner(harness: Harness) -> None:
    """Fifty mechanics accept the same broadcast at once: exactly one wins, the rest are refused."""
    ids = [await harness.create_mechanic(f"M{i}") for i in range(50)]
    apps = await asyncio.gather(*(harness.connect(i) for i in ids))
    booked = await harness.book(routing="broadcast")
    await asyncio.gather(*(app.expect("offer", request_id=booked["id"]) for app in apps))
    await asyncio.gather(*(app.send({"type": "accept", "request_id": booked["id"]}) for app in apps))
    await asyncio.sleep(1.5)
    winners = [app for app in apps if app.count("accepted", request_id=booked["id"])]
    refused = [app for app in apps if app.count("error", code="offer_unavailable")]
    revoked = [app for app in apps if app.count("offer_revoked", reason="taken")]
    assert len(winners) == 1
    assert len(refused) == 49
    assert {a.mechanic_id for a in revoked} == set(ids) - {winners[0].mechanic_id}
    current = await harness.request(booked["id"])
    assert current["mechanic_id"] == winners[0].mechanic_id
    assert (await _kinds(harness, booked["id"])).count("accepted") == 1


async def test_only_the_favorite_may_accept_during_priority(harness: Harness) -> None:
    """During the priority phase another mechanic's accept is refused."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await alex_app.send({"type": "accept", "request_id": booked["id"], "attempt": 1})
    error = await alex_app.expect("error")
    assert error["code"] == "offer_unavailable"
    assert (await harness.request(booked["id"]))["status"] == "pending"


async def test_stale_accept_from_an_earlier_phase_is_refused(harness: Harness) -> None:
    """An accept carrying the priority attempt is refused once the request moved to the broadcast."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await alex_app.expect("offer", kind="broadcast", timeout=5)
    await sam_app.send({"type": "accept", "request_id": booked["id"], "attempt": 1})
    assert (await sam_app.expect("error"))["code"] == "offer_unavailable"
    await sam_app.send({"type": "accept", "request_id": booked["id"], "attempt": 2})
    await sam_app.expect("accepted")


async def test_mechanic_cancel_after_accept_rebroadcasts_to_others(harness: Harness) -> None:
    """A mechanic giving back an accepted request sends it to everyone else at once; the customer is told."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer")
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await sam_app.expect("accepted")
    await sam_app.send({"type": "cancel", "request_id": booked["id"], "reason": "car trouble"})
    await sam_app.expect("given_back", request_id=booked["id"])
    offer = await alex_app.expect("offer", request_id=booked["id"], timeout=1)
    assert offer["kind"] == "broadcast" and offer["attempt"] == 2
    current = await harness.request(booked["id"])
    assert current["status"] == "pending" and current["mechanic_id"] is None
    assert current["message"] == "Your mechanic had to cancel. Finding you another mechanic…"
    assert current["fallback_broadcast_at"] is not None
    await sam_app.expect_nothing("offer", 0.3, kind="broadcast")
    await sam_app.send({"type": "cancel", "request_id": booked["id"]})
    assert (await sam_app.expect("error"))["code"] == "not_your_request"


async def test_customer_cancel_revokes_every_offer(harness: Harness) -> None:
    """Cancelling revokes the offer on every socket holding it; later accepts are refused."""
    ids = [await harness.create_mechanic(f"M{i}") for i in range(3)]
    apps = [await harness.connect(i) for i in ids]
    booked = await harness.book(routing="broadcast")
    for app in apps:
        await app.expect("offer")
    response = await harness.http.post(f"/api/session-requests/{booked['id']}/cancel", headers=harness.customer)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    for app in apps:
        await app.expect("offer_revoked", request_id=booked["id"], reason="cancelled")
    await apps[0].send({"type": "accept", "request_id": booked["id"], "attempt": 1})
    assert (await apps[0].expect("error"))["code"] == "offer_unavailable"
    again = await harness.http.post(f"/api/session-requests/{booked['id']}/cancel", headers=harness.customer)
    assert again.status_code == 409


async def test_favorite_deleted_while_pending_falls_back(harness: Harness) -> None:
    """Deleting the favorite during the priority window broadcasts the request at once."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
    assert (await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)).status_code == 204
    await alex_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=1)
    current = await harness.request(booked["id"])
    assert current["phase"] == "broadcast"
    assert current["message"] == "This mechanic is no longer available. Finding you another mechanic…"


async def test_mechanic_connecting_during_broadcast_receives_it(harness: Harness) -> None:
    """A mechanic who connects while a request is broadcast gets the offer on connect."""
    booked = await harness.book(routing="broadcast")
    alex = await harness.create_mechanic("Alex")
    alex_app = await harness.connect(alex)
    offer = await alex_app.expect("offer", request_id=booked["id"])
    assert offer["kind"] == "broadcast" and offer["expires_at"] is None
    await alex_app.send({"type": "accept", "request_id": booked["id"]})
    await harness.wait_for(booked["id"], status="accepted", mechanic_id=alex)


async def test_each_device_gets_each_offer_once(harness: Harness) -> None:
    """Every device of the favorite gets the priority offer, once."""
    sam = await harness.create_mechanic("Sam")
    phone = await harness.connect(sam)
    tablet = await harness.connect(sam)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await phone.expect("offer")
    await tablet.expect("offer")
    await tablet.send({"type": "accept", "request_id": booked["id"]})
    await phone.expect("accepted")
    await tablet.expect("accepted")
    assert phone.count("offer") == 1 and tablet.count("offer") == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"routing": "priority"}, 422, "validation_error"),
        ({"routing": "priority", "preferred_mechanic_id": str(uuid.uuid4())}, 404, "mechanic_not_found"),
        ({"routing": "teleport"}, 422, "validation_error"),
        ({"routing": "broadcast", "session_type": "sms"}, 422, "validation_error"),
        ({"routing": "broadcast", "plan_code": "gold"}, 422, "validation_error"),
        ({"routing": "broadcast", "session_type": 5}, 422, "validation_error"),
    ],
)
async def test_bad_booking_bodies(harness: Harness, body: dict[str, object], status: int, code: str) -> None:
    """Bookings with missing or unknown fields are refused with a clear error, and nothing is created."""
    body = {"session_type": "video", "plan_code": "standard", **body}
    response = await harness.http.post("/api/session-requests", json=body, headers=harness.customer)
    assert response.status_code == status
    assert response.json()["error"] == code


async def test_deleted_favorite_cannot_be_booked(harness: Harness) -> None:
    """Booking a deleted favorite answers 404 mechanic_not_found."""
    sam = await harness.create_mechanic("Sam")
    await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)
    response = await harness.http.post(
        "/api/session-requests",
        json={"session_type": "chat", "plan_code": "quick", "routing": "priority", "preferred_mechanic_id": sam},
        headers=harness.customer,
    )
    assert response.status_code == 404 and response.json()["error"] == "mechanic_not_found"


async def test_requests_are_private(harness: Harness) -> None:
    """Only the customer who booked (or an admin) can read a request; others get 404."""
    booked = await harness.book(routing="broadcast")
    other = harness.auth(harness.token(Role.CUSTOMER))
    assert (await harness.http.get(f"/api/session-requests/{booked['id']}", headers=other)).status_code == 404
    assert (await harness.http.get(f"/api/session-requests/{booked['id']}", headers=harness.admin)).status_code == 200
    cancel = await harness.http.post(f"/api/session-requests/{booked['id']}/cancel", headers=other)
    assert cancel.status_code == 404
    events = await harness.http.get(f"/api/admin/session-requests/{booked['id']}/events", headers=harness.customer)
    assert events.status_code == 403


async def test_timestamps_are_iso_utc_with_milliseconds(harness: Harness) -> None:
    """Every timestamp in the API is ISO-8601 UTC with milliseconds."""
    sam = await harness.create_mechanic("Sam")
    await harness.connect(sam)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    for name in ("created_at", "priority_deadline", "priority_notified_at"):
        value = booked[name]
        assert value.endswith("Z") and len(value.split(".")[1]) == 4, value
