"""Workshops as favorites: a booking for a team goes to whichever member takes it, over real sockets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from api.settings import Settings
from tests.helpers import Harness, MechanicApp, ServerProcess, spawn_server, start_server, stop_server


async def _workshop_status(harness: Harness, workshop_id: str) -> dict[str, Any]:
    response = await harness.http.get(f"/api/workshops/{workshop_id}/status", headers=harness.customer)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _kinds(harness: Harness, request_id: str) -> list[str]:
    return [e["kind"] for e in await harness.events(request_id)]


async def test_membership_is_managed_and_a_mechanic_works_for_one_workshop(harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    rivera = await harness.create_workshop("Rivera Auto", sam)
    other = await harness.create_workshop("Other Garage")
    again = await harness.http.put(f"/api/admin/workshops/{rivera}/members/{sam}", headers=harness.admin)
    assert again.status_code == 200 and [m["mechanic_id"] for m in again.json()["members"]] == [sam]
    taken = await harness.http.put(f"/api/admin/workshops/{other}/members/{sam}", headers=harness.admin)
    assert taken.status_code == 409 and taken.json()["error"] == "mechanic_in_other_workshop"
    unknown = await harness.http.put(f"/api/admin/workshops/{uuid.uuid4()}/members/{alex}", headers=harness.admin)
    assert unknown.status_code == 404 and unknown.json()["error"] == "workshop_not_found"
    nobody = await harness.http.put(f"/api/admin/workshops/{rivera}/members/{uuid.uuid4()}", headers=harness.admin)
    assert nobody.status_code == 404 and nobody.json()["error"] == "mechanic_not_found"
    added = await harness.http.put(f"/api/admin/workshops/{rivera}/members/{alex}", headers=harness.admin)
    assert {m["name"] for m in added.json()["members"]} == {"Sam", "Alex"}
    removed = await harness.http.delete(f"/api/admin/workshops/{rivera}/members/{sam}", headers=harness.admin)
    assert removed.status_code == 200 and [m["name"] for m in removed.json()["members"]] == ["Alex"]
    moved = await harness.http.put(f"/api/admin/workshops/{other}/members/{sam}", headers=harness.admin)
    assert moved.status_code == 200
    listed = (await harness.http.get("/api/admin/workshops", headers=harness.admin)).json()["workshops"]
    assert {w["name"]: [m["name"] for m in w["members"]] for w in listed} == {
        "Other Garage": ["Sam"],
        "Rivera Auto": ["Alex"],
    }
    as_customer = await harness.http.post("/api/admin/workshops", json={"name": "X"}, headers=harness.customer)
    assert as_customer.status_code == 403


async def test_workshop_status_is_online_while_any_member_is(harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    rivera = await harness.create_workshop("Rivera Auto", sam, alex)
    status = await _workshop_status(harness, rivera)
    assert status == {
        "workshop_id": rivera,
        "name": "Rivera Auto",
        "is_online": False,
        "online_count": 0,
        "online_members": [],
        "last_seen": None,
        "last_seen_seconds": None,
        "priority_booking": True,
    }
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    status = await _workshop_status(harness, rivera)
    assert status["is_online"] is True and status["online_count"] == 2
    assert sorted(status["online_members"]) == ["Alex", "Sam"]
    await alex_app.close()
    await asyncio.sleep(0.2)
    assert (await _workshop_status(harness, rivera))["online_count"] == 1
    alex_seen = (await harness.status(alex))["last_seen"]
    await asyncio.sleep(0.05)
    await sam_app.close()
    await asyncio.sleep(0.2)
    status = await _workshop_status(harness, rivera)
    sam_seen = (await harness.status(sam))["last_seen"]
    assert status["is_online"] is False and status["online_count"] == 0
    assert status["last_seen"] == max(sam_seen, alex_seen) == sam_seen
    missing = await harness.http.get(f"/api/workshops/{uuid.uuid4()}/status", headers=harness.customer)
    assert missing.status_code == 404 and missing.json()["error"] == "workshop_not_found"


async def test_a_workshop_favorite_is_listed_with_its_live_status(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    rivera = await harness.create_workshop("Rivera Auto", sam)
    body = {"provider_id": rivera, "provider_type": "workshop"}
    added = await harness.http.post("/api/customer/favorites", json=body, headers=harness.customer)
    assert added.status_code == 201 and added.json() == {**body, "name": "Rivera Auto"}
    as_mechanic = {"provider_id": rivera, "provider_type": "independent"}
    wrong = await harness.http.post("/api/customer/favorites", json=as_mechanic, headers=harness.customer)
    assert wrong.status_code == 404 and wrong.json()["error"] == "mechanic_not_found"
    await harness.connect(sam)
    favorites = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]
    assert len(favorites) == 1
    assert favorites[0]["provider_type"] == "workshop" and favorites[0]["name"] == "Rivera Auto"
    assert favorites[0]["is_online"] is True and favorites[0]["online_count"] == 1
    assert favorites[0]["online_members"] == ["Sam"]


async def test_priority_offer_goes_to_every_online_member_and_one_accept_wins(harness: Harness) -> None:
    sam, alex, kim = [await harness.create_mechanic(n) for n in ("Sam", "Alex", "Kim")]
    outsider = await harness.create_mechanic("Outsider")
    rivera = await harness.create_workshop("Rivera Auto", sam, alex, kim)
    sam_app, alex_app = await harness.connect(sam), await harness.connect(alex)
    outsider_app = await harness.connect(outsider)
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera)
    assert booked["preferred_workshop_id"] == rivera and booked["preferred_mechanic_id"] is None
    assert booked["routing"] == "priority" and booked["message"] == "Waiting for a mechanic at Rivera Auto…"
    for app in (sam_app, alex_app):
        offer = await app.expect("offer", request_id=booked["id"])
        assert offer["kind"] == "priority" and offer["workshop_name"] == "Rivera Auto"  # "for Rivera Auto"
    kim_app = await harness.connect(kim)  # a member connecting within the window gets it too
    greeted = await kim_app.expect("offer", request_id=booked["id"], kind="priority")
    assert greeted["workshop_name"] == "Rivera Auto"
    await asyncio.gather(*(app.send({"type": "accept", "request_id": booked["id"]}) for app in (sam_app, alex_app)))
    current = await harness.wait_for(booked["id"], status="accepted")
    winner, loser = (sam_app, alex_app) if current["mechanic_id"] == sam else (alex_app, sam_app)
    await winner.expect("accepted", request_id=booked["id"])
    await loser.expect("error", code="offer_unavailable")
    await kim_app.expect("offer_revoked", request_id=booked["id"])
    assert outsider_app.count("offer") == 0
    assert (await _kinds(harness, booked["id"])).count("accepted") == 1
    events = await harness.events(booked["id"])
    assert [e["detail"] for e in events if e["kind"] == "accepted"] == ["by the favorite"]


async def test_notify_and_wait_for_a_workshop_delivers_when_a_member_connects(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    rivera = await harness.create_workshop("Rivera Auto", sam)
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera)  # nobody is online
    assert booked["routing"] == "notify_and_wait" and booked["priority_notified_at"] is None
    assert booked["message"].startswith("No one at Rivera Auto is online")
    sam_app = await harness.connect(sam)
    await sam_app.expect("offer", request_id=booked["id"], kind="priority")
    await harness.wait_for(booked["id"], message="Waiting for a mechanic at Rivera Auto…")
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await harness.wait_for(booked["id"], status="accepted", mechanic_id=sam)


async def _sam_declines_for_rivera(harness: Harness) -> tuple[dict[str, Any], MechanicApp, MechanicApp, MechanicApp]:
    """Sam and Alex of Rivera Auto and an outsider, each with an app; a priority booking for Rivera Auto, offered to
    both members, which Sam declines. The booking and the three apps."""
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    outsider = await harness.create_mechanic("Outsider")
    rivera = await harness.create_workshop("Rivera Auto", sam, alex)
    sam_app, alex_app = await harness.connect(sam), await harness.connect(alex)
    outsider_app = await harness.connect(outsider)
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera)
    await sam_app.expect("offer", request_id=booked["id"])
    await alex_app.expect("offer", request_id=booked["id"])
    await sam_app.send({"type": "decline", "request_id": booked["id"]})
    await sam_app.expect("declined", request_id=booked["id"])
    return booked, sam_app, alex_app, outsider_app


async def test_a_members_decline_removes_only_them_until_every_member_declined(harness: Harness) -> None:
    booked, sam_app, alex_app, outsider_app = await _sam_declines_for_rivera(harness)
    await asyncio.sleep(0.3)
    assert (await harness.request(booked["id"]))["phase"] == "priority"
    assert outsider_app.count("offer") == 0
    await sam_app.send({"type": "accept", "request_id": booked["id"]})  # declined: no longer theirs
    await sam_app.expect("error", code="offer_unavailable")
    await alex_app.send({"type": "decline", "request_id": booked["id"]})
    await outsider_app.expect("offer", request_id=booked["id"], kind="broadcast")
    current = await harness.wait_for(booked["id"], phase="broadcast")
    assert current["message"] == "Rivera Auto isn't available right now. Finding you another mechanic…"
    await asyncio.sleep(0.2)
    assert sam_app.count("offer", kind="broadcast") == 0 and alex_app.count("offer", kind="broadcast") == 0


async def test_a_members_decline_still_holds_when_the_window_lapses(harness: Harness) -> None:
    """The broadcast after the deadline reaches everyone but the members who declined during the window."""
    booked, sam_app, alex_app, outsider_app = await _sam_declines_for_rivera(harness)
    await outsider_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=5)
    await alex_app.expect("offer", request_id=booked["id"], kind="broadcast")
    await asyncio.sleep(0.2)
    assert sam_app.count("offer", kind="broadcast") == 0


async def test_the_window_falls_back_and_one_ack_from_any_member_counts(harness: Harness) -> None:
    """A member who never acks does not make the offer resent when another member acked; at the deadline the
    request goes to everyone."""
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    outsider = await harness.create_mechanic("Outsider")
    rivera = await harness.create_workshop("Rivera Auto", sam, alex)
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex, auto_ack=False)
    outsider_app = await harness.connect(outsider)
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera)
    await alex_app.expect("offer", request_id=booked["id"])
    await outsider_app.expect("offer", request_id=booked["id"], kind="broadcast", timeout=5)
    kinds = await _kinds(harness, booked["id"])
    assert "acked" in kinds and "resent" not in kinds
    assert kinds[-2:] == ["fell_back", "broadcast"]
    assert alex_app.count("offer", kind="priority") == 1
    await sam_app.expect("offer_revoked", request_id=booked["id"])
    assert (await harness.request(booked["id"]))["phase"] == "broadcast"


async def test_a_deleted_or_empty_workshop_is_a_favorite_gone(harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    rivera = await harness.create_workshop("Rivera Auto", sam)
    garage = await harness.create_workshop("Garage", alex)
    await harness.http.post(
        "/api/customer/favorites", json={"provider_id": rivera, "provider_type": "workshop"}, headers=harness.customer
    )
    sam_app, alex_app = await harness.connect(sam), await harness.connect(alex)
    first = await harness.book(routing="priority", preferred_workshop_id=rivera)
    second = await harness.book(routing="priority", preferred_workshop_id=garage)
    await sam_app.expect("offer", request_id=first["id"])
    await alex_app.expect("offer", request_id=second["id"])

    deleted = await harness.http.delete(f"/api/admin/workshops/{rivera}", headers=harness.admin)
    assert deleted.status_code == 204
    current = await harness.wait_for(first["id"], phase="broadcast")
    assert current["message"] == "This workshop is no longer available. Finding you another mechanic…"
    favorites = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]
    assert favorites == []
    gone = await harness.http.post(
        "/api/session-requests",
        json={"session_type": "video", "plan_code": "standard", "routing": "priority", "preferred_workshop_id": rivera},
        headers=harness.customer,
    )
    assert gone.status_code == 404 and gone.json()["error"] == "workshop_not_found"

    emptied = await harness.http.delete(f"/api/admin/workshops/{garage}/members/{alex}", headers=harness.admin)
    assert emptied.status_code == 200 and emptied.json()["members"] == []
    await harness.wait_for(second["id"], phase="broadcast")
    kinds = await _kinds(harness, second["id"])
    assert kinds.count("fell_back") == 1
    empty = await harness.http.post(
        "/api/session-requests",
        json={"session_type": "video", "plan_code": "standard", "routing": "priority", "preferred_workshop_id": garage},
        headers=harness.customer,
    )
    assert empty.status_code == 404 and empty.json()["error"] == "workshop_not_found"


async def test_a_member_deleted_leaves_the_workshop(harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    rivera = await harness.create_workshop("Rivera Auto", sam, alex)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera)
    await alex_app.expect("offer", request_id=booked["id"])
    assert (await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)).status_code == 204
    assert (await harness.request(booked["id"]))["phase"] == "priority"  # Alex is still there
    assert (await _workshop_status(harness, rivera))["online_count"] == 1
    assert (await harness.http.delete(f"/api/admin/mechanics/{alex}", headers=harness.admin)).status_code == 204
    await harness.wait_for(booked["id"], phase="broadcast")


async def test_booking_names_one_favorite_of_the_right_type(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam")
    rivera = await harness.create_workshop("Rivera Auto", sam)
    cases = [
        {"preferred_mechanic_id": sam, "preferred_workshop_id": rivera},
        {"preferred_workshop_id": rivera, "provider_type": "independent"},
        {"preferred_mechanic_id": sam, "provider_type": "workshop"},
    ]
    for case in cases:
        body = {"session_type": "video", "plan_code": "standard", "routing": "priority", **case}
        response = await harness.http.post("/api/session-requests", json=body, headers=harness.customer)
        assert response.status_code == 422 and response.json()["error"] == "validation_error", case
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera, provider_type="workshop")
    again = await harness.http.post(
        "/api/session-requests",
        json={"session_type": "video", "plan_code": "standard", "routing": "priority", "preferred_workshop_id": rivera},
        headers=harness.customer,
    )
    assert again.status_code == 409 and again.json()["request_id"] == booked["id"]


async def test_kpis_count_a_members_accept_as_the_favorites(harness: Harness) -> None:
    sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
    rivera = await harness.create_workshop("Rivera Auto", sam)
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    by_member = await harness.book(routing="priority", preferred_workshop_id=rivera)
    await sam_app.expect("offer", request_id=by_member["id"])
    await sam_app.send({"type": "accept", "request_id": by_member["id"]})
    await harness.wait_for(by_member["id"], status="accepted")
    harness.customer_id = str(uuid.uuid4())
    by_mechanic = await harness.book(routing="priority", preferred_mechanic_id=alex)
    await alex_app.expect("offer", request_id=by_mechanic["id"])
    await alex_app.send({"type": "decline", "request_id": by_mechanic["id"]})
    await sam_app.expect("offer", request_id=by_mechanic["id"], kind="broadcast")
    await sam_app.send({"type": "accept", "request_id": by_mechanic["id"]})
    await harness.wait_for(by_mechanic["id"], status="accepted")
    report = (await harness.http.get("/api/admin/kpis", headers=harness.admin)).json()
    assert report["favorite_acceptance"]["by_provider_type"] == {
        "independent": {"rate": 0.0, "accepted_by_favorite": 0, "with_favorite": 1},
        "workshop": {"rate": 1.0, "accepted_by_favorite": 1, "with_favorite": 1},
    }
    assert report["favorite_acceptance"]["rate"] == 0.5


@pytest.fixture
async def second_process(harness: Harness) -> AsyncIterator[ServerProcess]:
    spawned = await spawn_server(harness.settings)
    yield spawned
    stop_server(spawned)


async def test_an_accept_race_among_members_on_two_processes_has_one_winner(
    harness: Harness, second_process: ServerProcess
) -> None:
    members = [await harness.create_mechanic(f"Member {i}") for i in range(6)]
    rivera = await harness.create_workshop("Rivera Auto", *members)
    apps = [
        await harness.connect(m, ws_url=harness.ws_url if i % 2 else second_process.ws_url)
        for i, m in enumerate(members)
    ]
    booked = await harness.book(routing="priority", preferred_workshop_id=rivera)
    for app in apps:
        await app.expect("offer", request_id=booked["id"], kind="priority")
    await asyncio.gather(*(app.send({"type": "accept", "request_id": booked["id"]}) for app in apps))
    current = await harness.wait_for(booked["id"], status="accepted")
    await asyncio.sleep(0.5)
    winners = [app for app in apps if app.count("accepted", request_id=booked["id"])]
    assert [w.mechanic_id for w in winners] == [current["mechanic_id"]]
    assert sum(app.count("error", code="offer_unavailable") for app in apps) == len(apps) - 1
    assert (await _kinds(harness, booked["id"])).count("accepted") == 1


async def test_a_member_added_mid_window_is_offered_the_request(settings: Settings) -> None:
    async with start_server(replace(settings, priority_window_s=5.0)) as harness:
        sam, alex = await harness.create_mechanic("Sam"), await harness.create_mechanic("Alex")
        rivera = await harness.create_workshop("Rivera Auto", sam)
        sam_app, alex_app = await harness.connect(sam), await harness.connect(alex)
        booked = await harness.book(routing="priority", preferred_workshop_id=rivera)
        await sam_app.expect("offer", request_id=booked["id"])
        assert alex_app.count("offer") == 0
        added = await harness.http.put(f"/api/admin/workshops/{rivera}/members/{alex}", headers=harness.admin)
        assert added.status_code == 200
        await alex_app.expect("offer", request_id=booked["id"], kind="priority")
        await alex_app.send({"type": "accept", "request_id": booked["id"]})
        await harness.wait_for(booked["id"], status="accepted", mechanic_id=alex)
