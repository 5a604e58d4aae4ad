"""Finishing a session, the favorites prompt, booking counts, and the rollout's arms."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from api.auth import Role
from api.settings import Settings
from dispatch.rollout import Arm, arm_for, bucket
from tests.helpers import Harness, start_server


async def _accepted_request(harness: Harness, mechanic_id: str, **body: Any) -> str:
    app = await harness.connect(mechanic_id)
    booked = await harness.book(**body)
    await app.expect("offer", request_id=booked["id"])
    await app.send({"type": "accept", "request_id": booked["id"]})
    await app.expect("accepted", request_id=booked["id"])
    return str(booked["id"])


async def test_completion_then_favorite_prompt(harness: Harness) -> None:
    """After the assigned mechanic completes, the customer is prompted to save them; adding clears the prompt."""
    sam = await harness.create_mechanic("Sam")
    request_id = await _accepted_request(harness, sam, routing="broadcast")
    assert (await harness.request(request_id))["favorite_prompt"] is None
    done = await harness.http.post(
        f"/api/session-requests/{request_id}/complete", headers=harness.auth(harness.token(Role.MECHANIC, sam))
    )
    assert done.status_code == 200 and done.json()["status"] == "completed"
    sam_choice = {"provider_id": sam, "provider_type": "independent", "name": "Sam"}
    prompt = {"mechanic_id": sam, "name": "Sam", "choices": [sam_choice]}
    assert (await harness.request(request_id))["favorite_prompt"] == prompt
    await harness.http.post("/api/customer/favorites", json={"provider_id": sam}, headers=harness.customer)
    assert (await harness.request(request_id))["favorite_prompt"] is None


async def test_a_workshop_members_session_offers_the_mechanic_and_the_workshop(harness: Harness) -> None:
    """After a session with a workshop's member, the prompt offers both; each added leaves the other."""
    sam = await harness.create_mechanic("Sam")
    created = await harness.http.post("/api/admin/workshops", json={"name": "Patel Motors"}, headers=harness.admin)
    patel = created.json()["id"]
    await harness.http.put(f"/api/admin/workshops/{patel}/members/{sam}", headers=harness.admin)
    request_id = await _accepted_request(harness, sam, routing="broadcast")
    await harness.http.post(
        f"/api/session-requests/{request_id}/complete", headers=harness.auth(harness.token(Role.MECHANIC, sam))
    )
    choices = (await harness.request(request_id))["favorite_prompt"]["choices"]
    assert choices == [
        {"provider_id": sam, "provider_type": "independent", "name": "Sam"},
        {"provider_id": patel, "provider_type": "workshop", "name": "Patel Motors"},
    ]
    body = {"provider_id": patel, "provider_type": "workshop"}
    await harness.http.post("/api/customer/favorites", json=body, headers=harness.customer)
    prompt = (await harness.request(request_id))["favorite_prompt"]
    assert prompt["name"] == "Sam" and [c["provider_id"] for c in prompt["choices"]] == [sam]
    await harness.http.post("/api/customer/favorites", json={"provider_id": sam}, headers=harness.customer)
    assert (await harness.request(request_id))["favorite_prompt"] is None


async def test_prompt_can_be_dismissed(harness: Harness) -> None:
    """Dismissing the prompt hides it for good."""
    sam = await harness.create_mechanic("Sam")
    request_id = await _accepted_request(harness, sam, routing="broadcast")
    await harness.http.post(
        f"/api/session-requests/{request_id}/complete", headers=harness.auth(harness.token(Role.MECHANIC, sam))
    )
    dismissed = await harness.http.post(
        f"/api/session-requests/{request_id}/favorite-prompt/dismiss", headers=harness.customer
    )
    assert dismissed.status_code == 204
    assert (await harness.request(request_id))["favorite_prompt"] is None


async def test_only_the_assigned_mechanic_completes_an_accepted_request(harness: Harness) -> None:
    """Another mechanic gets 403 not_your_request; a pending request cannot be completed."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    request_id = await _accepted_request(harness, sam, routing="broadcast")
    other = await harness.http.post(
        f"/api/session-requests/{request_id}/complete", headers=harness.auth(harness.token(Role.MECHANIC, alex))
    )
    assert other.status_code == 403 and other.json()["error"] == "not_your_request"
    pending = await harness.book(routing="broadcast")
    response = await harness.http.post(
        f"/api/session-requests/{pending['id']}/complete", headers=harness.auth(harness.token(Role.MECHANIC, sam))
    )
    assert response.status_code == 403


async def _completed(harness: Harness, mechanic_id: str, **body: Any) -> str:
    request_id = await _accepted_request(harness, mechanic_id, **body)
    done = await harness.http.post(
        f"/api/session-requests/{request_id}/complete", headers=harness.auth(harness.token(Role.MECHANIC, mechanic_id))
    )
    assert done.status_code == 200
    return request_id


async def _booking_counts(harness: Harness) -> list[tuple[str, int]]:
    favorites = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]
    return [(f["name"], f["booking_count"]) for f in favorites]


async def test_a_favorite_counts_its_completed_sessions_once_most_booked_first(harness: Harness) -> None:
    """Completed sessions count, those before the favorite was added too; an accepted session not yet completed
    and one given back do not; a workshop's session counts for the workshop only."""
    sam, alex, lee = [await harness.create_mechanic(name) for name in ("Sam", "Alex", "Lee")]
    created = await harness.http.post("/api/admin/workshops", json={"name": "Patel Motors"}, headers=harness.admin)
    patel = created.json()["id"]
    await harness.http.put(f"/api/admin/workshops/{patel}/members/{lee}", headers=harness.admin)
    await _completed(harness, alex, routing="broadcast")  # before Alex is a favorite: counted all the same
    for provider, kind in ((sam, "independent"), (alex, "independent"), (patel, "workshop"), (lee, "independent")):
        body = {"provider_id": provider, "provider_type": kind}
        await harness.http.post("/api/customer/favorites", json=body, headers=harness.customer)
    await _completed(harness, alex, routing="priority", preferred_mechanic_id=alex)
    await _accepted_request(harness, sam, routing="priority", preferred_mechanic_id=sam)  # not completed yet
    given_back = await _accepted_request(harness, sam, routing="broadcast")
    sam_app = await harness.connect(sam)
    await sam_app.send({"type": "cancel", "request_id": given_back, "reason": "car trouble"})
    await sam_app.expect("given_back", request_id=given_back)
    await _completed(harness, lee, routing="priority", preferred_workshop_id=patel)
    counts = await _booking_counts(harness)
    assert counts[0] == ("Alex", 2)
    assert sorted(counts[1:]) == [("Lee", 0), ("Patel Motors", 1), ("Sam", 0)]


def test_arms_are_stable_and_follow_the_percentage() -> None:
    """A customer's arm never changes, and the split follows FAVORITES_ROLLOUT_PERCENT."""
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(2000)]
    assert all(arm_for(i, 30) == arm_for(i, 30) for i in ids)
    share = sum(arm_for(i, 30) is Arm.PRIORITY for i in ids) / len(ids)
    assert 0.26 < share < 0.34
    assert all(arm_for(i, 100) is Arm.PRIORITY and arm_for(i, 0) is Arm.CONTROL for i in ids)
    assert all(0 <= bucket(i) < 100 for i in ids)


@pytest.fixture
async def rolled_back(settings: Settings, redis: Any) -> AsyncIterator[Harness]:
    """A server with the favorites rollout at 0%: every customer is in the control arm."""
    async with start_server(replace(settings, rollout_percent=0)) as harness:
        yield harness


async def test_control_arm_gets_the_broadcast(rolled_back: Harness) -> None:
    """Outside the rollout, asking for the favorite still broadcasts; status tells the client."""
    harness = rolled_back
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    alex_app = await harness.connect(alex)
    assert (await harness.status(sam))["priority_booking"] is False
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    assert booked["routing_type"] == "broadcast" and booked["phase"] == "broadcast" and booked["arm"] == "control"
    assert booked["preferred_mechanic_id"] == sam
    await alex_app.expect("offer", request_id=booked["id"], kind="broadcast")
    created = (await harness.events(booked["id"]))[0]
    assert "control arm" in created["detail"]
