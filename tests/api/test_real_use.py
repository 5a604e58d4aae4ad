"""What real apps do between the happy steps: reload, double click, retry with an Idempotency-Key."""

from __future__ import annotations

import asyncio
import uuid

from api.auth import Role
from tests.helpers import Harness

BOOK_SAM = {"session_type": "video", "plan_code": "quick", "routing": "priority"}


async def test_a_second_open_request_for_the_same_favorite_is_refused_with_the_first_ones_id(harness: Harness) -> None:
    """ "Book Again" twice: 409 request_already_open naming the open request; after a cancel, booking works again;
    another customer is not affected."""
    sam = await harness.create_mechanic("Sam")
    first = await harness.book(**BOOK_SAM, preferred_mechanic_id=sam)
    again = await harness.http.post(
        "/api/session-requests", json={**BOOK_SAM, "preferred_mechanic_id": sam}, headers=harness.customer
    )
    assert again.status_code == 409
    assert again.json() == {
        "error": "request_already_open",
        "message": again.json()["message"],
        "request_id": first["id"],
    }
    someone_else = harness.auth(harness.token(Role.CUSTOMER))
    other = await harness.http.post(
        "/api/session-requests", json={**BOOK_SAM, "preferred_mechanic_id": sam}, headers=someone_else
    )
    assert other.status_code == 201
    cancelled = await harness.http.post(f"/api/session-requests/{first['id']}/cancel", headers=harness.customer)
    assert cancelled.status_code == 200
    rebooked = await harness.book(**BOOK_SAM, preferred_mechanic_id=sam)
    assert rebooked["id"] != first["id"]


async def test_a_double_click_creates_exactly_one_request(harness: Harness) -> None:
    """Two identical bookings sent at once, without a key: one 201, one 409 naming it, one request stored."""
    sam = await harness.create_mechanic("Sam")
    body = {**BOOK_SAM, "preferred_mechanic_id": sam}
    responses = await asyncio.gather(
        *(harness.http.post("/api/session-requests", json=body, headers=harness.customer) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    created = next(r for r in responses if r.status_code == 201).json()
    refused = next(r for r in responses if r.status_code == 409).json()
    assert refused["request_id"] == created["id"]
    listed = await harness.http.get("/api/customer/session-requests", headers=harness.customer)
    assert [r["id"] for r in listed.json()["requests"]] == [created["id"]]


async def test_an_idempotency_key_answers_the_first_result_and_refuses_another_body(harness: Harness) -> None:
    """Same key and body: the first answer again, marked replayed; same key, other body: 422; keys are per user."""
    key = {"Idempotency-Key": f"book-{uuid.uuid4()}"}
    body = {"session_type": "chat", "plan_code": "quick", "routing": "broadcast"}
    first = await harness.http.post("/api/session-requests", json=body, headers={**harness.customer, **key})
    again = await harness.http.post("/api/session-requests", json=body, headers={**harness.customer, **key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other_body = await harness.http.post(
        "/api/session-requests", json={**body, "session_type": "video"}, headers={**harness.customer, **key}
    )
    assert other_body.status_code == 422 and other_body.json()["error"] == "idempotency_key_reused"
    someone_else = harness.auth(harness.token(Role.CUSTOMER))
    theirs = await harness.http.post("/api/session-requests", json=body, headers={**someone_else, **key})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    mine = await harness.http.get("/api/customer/session-requests", headers=harness.customer)
    assert [r["id"] for r in mine.json()["requests"]] == [first.json()["id"]]


async def test_concurrent_retries_with_one_key_create_one_request(harness: Harness) -> None:
    """Retries racing with one key: one request, and every answer is that request (never 409 "in use")."""
    key = {"Idempotency-Key": "retry-storm"}
    body = {"session_type": "chat", "plan_code": "quick", "routing": "broadcast"}
    responses = await asyncio.gather(
        *(harness.http.post("/api/session-requests", json=body, headers={**harness.customer, **key}) for _ in range(5))
    )
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await harness.http.get("/api/customer/session-requests", headers=harness.customer)
    assert len(listed.json()["requests"]) == 1


async def test_a_refused_request_releases_its_key_and_bad_keys_are_422(harness: Harness) -> None:
    """A booking refused before it did anything (unknown plan) may be corrected and retried with the same key."""
    key = {"Idempotency-Key": "fix-and-retry"}
    bad = {"session_type": "chat", "plan_code": "platinum", "routing": "broadcast"}
    refused = await harness.http.post("/api/session-requests", json=bad, headers={**harness.customer, **key})
    assert refused.status_code == 422
    fixed = await harness.http.post(
        "/api/session-requests", json={**bad, "plan_code": "quick"}, headers={**harness.customer, **key}
    )
    assert fixed.status_code == 201
    for bad_key in ("x" * 256, "tab\there"):
        response = await harness.http.post(
            "/api/session-requests", json=bad, headers={**harness.customer, "Idempotency-Key": bad_key}
        )
        assert response.status_code == 422 and "Idempotency-Key" in response.json()["message"]


async def test_a_customer_lists_their_own_open_and_recent_requests(harness: Harness) -> None:
    """open: pending or accepted, newest first; recent: any status; never another customer's; bad filter 422."""
    sam = await harness.create_mechanic("Sam")
    older = await harness.book(session_type="chat", plan_code="quick", routing="broadcast")
    newer = await harness.book(**BOOK_SAM, preferred_mechanic_id=sam)
    someone_else = harness.auth(harness.token(Role.CUSTOMER))
    await harness.http.post(
        "/api/session-requests",
        json={"session_type": "chat", "plan_code": "quick", "routing": "broadcast"},
        headers=someone_else,
    )
    listed = (await harness.http.get("/api/customer/session-requests", headers=harness.customer)).json()
    assert [r["id"] for r in listed["requests"]] == [newer["id"], older["id"]]
    assert listed["requests"][0] == await harness.request(newer["id"])  # the shape of GET /api/session-requests/{id}
    await harness.http.post(f"/api/session-requests/{older['id']}/cancel", headers=harness.customer)
    open_now = await harness.http.get(
        "/api/customer/session-requests", params={"status": "open"}, headers=harness.customer
    )
    assert [r["id"] for r in open_now.json()["requests"]] == [newer["id"]]
    recent = await harness.http.get(
        "/api/customer/session-requests", params={"status": "recent"}, headers=harness.customer
    )
    assert [(r["id"], r["status"]) for r in recent.json()["requests"]] == [
        (newer["id"], "pending"),
        (older["id"], "cancelled"),
    ]
    wrong = await harness.http.get("/api/customer/session-requests", params={"status": "all"}, headers=harness.customer)
    assert wrong.status_code == 422
    as_mechanic = await harness.http.get(
        "/api/customer/session-requests", headers=harness.auth(harness.token(Role.MECHANIC, sam))
    )
    assert as_mechanic.status_code == 403


async def test_a_mechanic_lists_their_sessions_until_completed(harness: Harness) -> None:
    """A reloaded mechanic console finds its accepted sessions; completed ones and others' are not listed."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    booked = await harness.book(**BOOK_SAM, preferred_mechanic_id=sam)
    await sam_app.expect("offer", request_id=booked["id"])
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await sam_app.expect("accepted", request_id=booked["id"])
    sam_token = harness.auth(harness.token(Role.MECHANIC, sam))
    listed = (await harness.http.get("/api/mechanic/sessions", headers=sam_token)).json()
    assert [(s["request_id"], s["customer_name"], s["plan_code"]) for s in listed["sessions"]] == [
        (booked["id"], "Jordan", "quick")
    ]
    alex_token = harness.auth(harness.token(Role.MECHANIC, alex))
    assert (await harness.http.get("/api/mechanic/sessions", headers=alex_token)).json() == {"sessions": []}
    await harness.http.post(f"/api/session-requests/{booked['id']}/complete", headers=sam_token)
    assert (await harness.http.get("/api/mechanic/sessions", headers=sam_token)).json() == {"sessions": []}
    assert (await harness.http.get("/api/mechanic/sessions", headers=harness.customer)).status_code == 403
