"""What support looks up: any request by id, customer, mechanic or time, and a mechanic by name."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from api.auth import Role
from tests.helpers import Harness

SEARCH = "/api/admin/session-requests"


async def _found(harness: Harness, **params: str) -> list[str]:
    response = await harness.http.get(SEARCH, params=params, headers=harness.admin)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["requests"]]


async def _book_as(harness: Harness, customer_id: str, name: str, **body: Any) -> str:
    headers = harness.auth(harness.token(Role.CUSTOMER, customer_id, name))
    body = {"session_type": "video", "plan_code": "standard", **body}
    response = await harness.http.post("/api/session-requests", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_support_finds_any_request_by_id_customer_mechanic_or_time(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam Rivera")
    sam_app = await harness.connect(sam)
    jordan, casey = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
    first = await _book_as(harness, jordan, "Jordan", routing="broadcast")
    await sam_app.expect("offer", request_id=first)
    await sam_app.send({"type": "accept", "request_id": first})
    await sam_app.expect("accepted", request_id=first)
    done = await harness.http.post(
        f"/api/session-requests/{first}/complete", headers=harness.auth(harness.token(Role.MECHANIC, sam))
    )
    assert done.status_code == 200
    await asyncio.sleep(0.01)
    between = datetime.now(UTC)
    second = await _book_as(harness, casey, "Casey 100%_sure", routing="priority", preferred_mechanic_id=sam)

    assert await _found(harness) == [second]  # by default the open ones: the completed one is not there
    assert await _found(harness, status="any") == [second, first]
    assert await _found(harness, status="any", id=first) == [first]
    assert await _found(harness, status="any", id=first[:8]) == [first]  # as the console shows it
    assert await _found(harness, status="any", customer="jordan") == [first]
    assert await _found(harness, status="any", customer=casey) == [second]
    assert await _found(harness, status="any", customer="100%_") == [second]  # % and _ are themselves
    assert await _found(harness, status="any", customer="1000") == []
    assert await _found(harness, status="any", mechanic="rivera") == [second, first]  # favorite or accepted
    assert await _found(harness, status="any", mechanic=sam, customer="jordan") == [first]
    assert await _found(harness, status="any", since=between.isoformat()) == [second]
    assert await _found(harness, status="any", until=between.isoformat()) == [first]
    later = (between + timedelta(hours=1)).isoformat()
    assert await _found(harness, status="any", since=later) == []

    for bad in (
        {"status": "closed"},
        {"since": "yesterday"},
        {"customer": "x" * 201},
        {"id": "y" * 37},
        {"customer": "a\x00b"},
    ):
        response = await harness.http.get(SEARCH, params={"status": "any", **bad}, headers=harness.admin)
        assert response.status_code == 422 and response.json()["error"] == "validation_error", bad


async def test_operations_picks_a_mechanic_by_name(harness: Harness) -> None:
    sam = await harness.create_mechanic("Sam Patel")
    other_sam = await harness.create_mechanic("Sam Lee")
    await harness.create_mechanic("Alex")
    gone = await harness.create_mechanic("Sam Gone")
    await harness.http.delete(f"/api/admin/mechanics/{gone}", headers=harness.admin)
    response = await harness.http.get("/api/admin/mechanics", params={"name": "sam"}, headers=harness.admin)
    assert response.status_code == 200
    found = response.json()["mechanics"]
    assert [(m["id"], m["name"]) for m in found] == [(other_sam, "Sam Lee"), (sam, "Sam Patel")]
    assert found[0] == {"id": other_sam, "name": "Sam Lee", "provider_type": "independent", "workshop_id": None}
    as_customer = await harness.http.get("/api/admin/mechanics", headers=harness.customer)
    assert as_customer.status_code == 403
