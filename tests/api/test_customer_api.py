"""The customer-facing HTTP API: status, favorites, admin, health, and the JSON errors of every bad input."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from api.auth import Role
from tests.helpers import Harness


async def test_status_of_unknown_or_malformed_mechanic_is_404(harness: Harness) -> None:
    """Unknown and malformed ids both answer 404 mechanic_not_found."""
    for mechanic_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = await harness.http.get(f"/api/mechanics/{mechanic_id}/status", headers=harness.customer)
        assert response.status_code == 404
        assert response.json()["error"] == "mechanic_not_found"


async def test_status_needs_a_valid_token(harness: Harness) -> None:
    """No token, a garbage token, or an expired one: 401 with a JSON error."""
    from api.auth import mint_token

    mechanic_id = await harness.create_mechanic()
    expired = mint_token(harness.secret, sub=str(uuid.uuid4()), role=Role.CUSTOMER, ttl_s=-5)
    for headers in ({}, {"Authorization": "Bearer nope"}, harness.auth(expired), {"Authorization": "Basic x"}):
        response = await harness.http.get(f"/api/mechanics/{mechanic_id}/status", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


async def test_status_is_readable_by_any_role(harness: Harness) -> None:
    """Customers, mechanics and admins may all read a status."""
    mechanic_id = await harness.create_mechanic()
    for role in Role:
        headers = harness.auth(harness.token(role))
        response = await harness.http.get(f"/api/mechanics/{mechanic_id}/status", headers=headers)
        assert response.status_code == 200


async def test_pipelined_polls_on_one_connection_each_get_their_whole_answer(harness: Harness) -> None:
    """Three polls sent at once on one socket (a 200, a 304 for its tag, a 404), the last asking to close: each
    answer whole and in order, then the server closes, as HTTP/1.1 keep-alive and pipelining require."""
    mechanic_id = await harness.create_mechanic("Sam")
    first = await harness.http.get(f"/api/mechanics/{mechanic_id}/status", headers=harness.customer)
    tag = first.headers["etag"]
    token = harness.customer["Authorization"]
    host, port = harness.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"Host: x\r\nAuthorization: {token}\r\n"
    writer.write(
        (
            f"GET /api/mechanics/{mechanic_id}/status HTTP/1.1\r\n{head}\r\n"
            f"GET /api/mechanics/{mechanic_id}/status HTTP/1.1\r\n{head}If-None-Match: {tag}\r\n\r\n"
            f"GET /api/mechanics/{uuid.uuid4()}/status HTTP/1.1\r\n{head}Connection: close\r\n\r\n"
        ).encode()
    )
    answers = (await asyncio.wait_for(reader.read(), 5)).decode()  # to the end: the server must close
    writer.close()
    parts = answers.split("HTTP/1.1 ")[1:]
    assert [p.split(" ", 1)[0] for p in parts] == ["200", "304", "404"], answers
    ok_head, ok_body = parts[0].split("\r\n\r\n")
    assert json.loads(ok_body)["name"] == "Sam" and f"content-length: {len(ok_body)}" in ok_head
    assert f"etag: {tag}" in parts[1] and parts[1].endswith("\r\n\r\n")  # no body
    assert json.loads(parts[2].split("\r\n\r\n")[1])["error"] == "mechanic_not_found"
    assert "connection: close" in parts[2]


async def test_dashboard_status_one_entry_per_id(harness: Harness) -> None:
    """The batch endpoint answers one entry per id, in order, with an error entry for unknown ids."""
    online = await harness.create_mechanic("On")
    offline = await harness.create_mechanic("Off")
    await harness.connect(online)
    unknown = str(uuid.uuid4())
    response = await harness.http.get(
        "/api/mechanics/status", params={"ids": f"{online},{offline},{unknown}"}, headers=harness.customer
    )
    assert response.status_code == 200
    entries = response.json()["mechanics"]
    assert [e["mechanic_id"] for e in entries] == [online, offline, unknown]
    assert entries[0]["is_online"] is True and entries[1]["is_online"] is False
    assert entries[2]["error"] == "mechanic_not_found"


async def test_dashboard_status_limits(harness: Harness) -> None:
    """More than 100 ids, or none, is a 422."""
    ids = ",".join(str(uuid.uuid4()) for _ in range(101))
    response = await harness.http.get("/api/mechanics/status", params={"ids": ids}, headers=harness.customer)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    response = await harness.http.get("/api/mechanics/status", headers=harness.customer)
    assert response.status_code == 422


async def test_favorites_add_list_remove(harness: Harness) -> None:
    """Add answers 201 then 200; the list carries live status; remove answers 204."""
    sam = await harness.create_mechanic("Sam")
    body = {"provider_id": sam, "provider_type": "independent"}
    first = await harness.http.post("/api/customer/favorites", json=body, headers=harness.customer)
    again = await harness.http.post("/api/customer/favorites", json=body, headers=harness.customer)
    assert (first.status_code, again.status_code) == (201, 200)
    await harness.connect(sam)
    listing = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]
    assert len(listing) == 1
    assert listing[0]["provider_id"] == sam and listing[0]["name"] == "Sam" and listing[0]["is_online"] is True
    removed = await harness.http.delete(f"/api/customer/favorites/{sam}", headers=harness.customer)
    assert removed.status_code == 204
    listing = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]
    assert listing == []


async def test_favorites_are_private_to_each_customer(harness: Harness) -> None:
    """A customer sees and changes only their own favorites."""
    sam = await harness.create_mechanic("Sam")
    await harness.http.post("/api/customer/favorites", json={"provider_id": sam}, headers=harness.customer)
    other = harness.auth(harness.token(Role.CUSTOMER))
    assert (await harness.http.get("/api/customer/favorites", headers=other)).json()["favorites"] == []
    await harness.http.delete(f"/api/customer/favorites/{sam}", headers=other)
    mine = (await harness.http.get("/api/customer/favorites", headers=harness.customer)).json()["favorites"]
    assert [f["provider_id"] for f in mine] == [sam]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ("[]", 422),
        ("{}", 422),
        ('{"provider_id": 5}', 422),
        ('{"provider_id": "PLACEHOLDER", "provider_type": "spaceship"}', 422),
        ('{"provider_id": "5f0c6a4e-8b1d-4c2e-9a37-0d6b2f1e4c88"}', 404),  # no such mechanic
        ('{"provider_id": "not-a-uuid"}', 404),
    ],
)
async def test_bad_favorite_bodies(harness: Harness, body: str, status: int) -> None:
    """Bodies that are not JSON are 400, of the wrong shape 422, unknown providers 404, always as JSON errors."""
    sam = await harness.create_mechanic()
    response = await harness.http.post(
        "/api/customer/favorites", content=body.replace("PLACEHOLDER", sam), headers=harness.customer
    )
    assert response.status_code == status
    assert set(response.json()) == {"error", "message"}


async def test_favorites_are_for_customers(harness: Harness) -> None:
    """A mechanic's token cannot use the customer endpoints: 403."""
    response = await harness.http.get("/api/customer/favorites", headers=harness.auth(harness.token(Role.MECHANIC)))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_deleted_mechanic_leaves_every_favorites_list(harness: Harness) -> None:
    """Soft-deleting a mechanic removes them from every customer's favorites."""
    sam = await harness.create_mechanic("Sam")
    other = harness.auth(harness.token(Role.CUSTOMER))
    for headers in (harness.customer, other):
        await harness.http.post("/api/customer/favorites", json={"provider_id": sam}, headers=headers)
    assert (await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)).status_code == 204
    for headers in (harness.customer, other):
        assert (await harness.http.get("/api/customer/favorites", headers=headers)).json()["favorites"] == []
    again = await harness.http.delete(f"/api/admin/mechanics/{sam}", headers=harness.admin)
    assert again.status_code == 404


async def test_admin_endpoints_need_admin(harness: Harness) -> None:
    """Creating mechanics needs the admin role; bad bodies are 422."""
    response = await harness.http.post("/api/admin/mechanics", json={"name": "X"}, headers=harness.customer)
    assert response.status_code == 403
    for body in ({}, {"name": ""}, {"name": "X", "provider_type": "boat"}):
        response = await harness.http.post("/api/admin/mechanics", json=body, headers=harness.admin)
        assert response.status_code == 422


async def test_health_and_readiness(harness: Harness) -> None:
    """/healthz says alive; /readyz checks Redis, the database and its schema."""
    assert (await harness.http.get("/healthz")).json() == {"status": "ok"}
    ready = await harness.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": True, "database": True, "schema": True}


async def test_openapi_describes_the_api(harness: Harness) -> None:
    """/openapi.json lists every HTTP endpoint."""
    document = (await harness.http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    for path in ("/api/mechanics/{mechanic_id}/status", "/api/customer/favorites", "/api/session-requests"):
        assert path in document["paths"]


async def test_unknown_route_and_method_are_json(harness: Harness) -> None:
    """Unknown paths are a JSON 404, wrong methods a JSON 405."""
    missing = await harness.http.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = await harness.http.put("/api/customer/favorites", headers=harness.customer)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
