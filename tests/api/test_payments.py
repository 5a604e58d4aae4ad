"""Stripe Checkout and webhook fulfillment: exactly one request per paid checkout, nothing from a bad event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.datastructures import Secret

from api.settings import Settings
from tests.helpers import Harness, start_server
from tests.stripe_standin import StripeStandIn, checkout_event, sign, stripe_standin

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
async def standin() -> AsyncIterator[StripeStandIn]:
    async with stripe_standin() as running:
        yield running


@pytest.fixture
async def paying(settings: Settings, standin: StripeStandIn, redis: Any) -> AsyncIterator[Harness]:
    """A server with payments on, its Stripe API base pointed at the local stand-in."""
    settings = replace(
        settings,
        stripe_secret_key=Secret("sk_test_123"),
        stripe_webhook_secret=Secret(WEBHOOK_SECRET),
        stripe_api_base=standin.base_url,
    )
    async with start_server(settings) as harness:
        yield harness


async def _deliver(harness: Harness, payload: str, signature: str | None = None) -> Any:
    headers = {"Stripe-Signature": signature or sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"}
    return await harness.http.post("/api/stripe/webhook", content=payload, headers=headers)


async def _request_count(harness: Harness) -> int:
    return int((await harness.http.get("/api/admin/kpis", headers=harness.admin)).json()["requests"])


def _metadata(harness: Harness, **overrides: str) -> dict[str, str]:
    values = {
        "customer_id": harness.customer_id,
        "preferred_mechanic_id": "",
        "routing_type": "broadcast",
        "routing": "broadcast",
        "provider_type": "",
        "session_type": "video",
        "plan_code": "standard",
        "arm": "priority",
    }
    values.update(overrides)
    return values


async def test_checkout_carries_the_routing_choice_in_metadata(paying: Harness, standin: StripeStandIn) -> None:
    """Checkout creates a Stripe session priced from the plans table, with the routing choice in metadata."""
    sam = await paying.create_mechanic("Sam")
    body = {
        "session_type": "video",
        "plan_code": "extended",
        "routing": "priority",
        "preferred_mechanic_id": sam,
        "provider_type": "independent",
    }
    response = await paying.http.post("/api/checkout", json=body, headers=paying.customer)
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["checkout_session_id"].startswith("cs_test_") and created["url"].startswith("https://")
    sent = standin.sessions[-1]
    assert sent["mode"] == "payment"
    assert sent["line_items[0][price_data][unit_amount]"] == "6999"
    assert sent["line_items[0][price_data][currency]"] == "usd"
    assert {k[len("metadata[") : -1]: v for k, v in sent.items() if k.startswith("metadata[")} == {
        "customer_id": paying.customer_id,
        "customer_name": "Jordan",
        "preferred_mechanic_id": sam,
        "routing_type": "priority_broadcast",
        "routing": "priority",
        "provider_type": "independent",
        "session_type": "video",
        "plan_code": "extended",
        "arm": "priority",
    }


async def test_a_workshop_booking_goes_through_checkout_to_its_members(paying: Harness, standin: StripeStandIn) -> None:
    """The favorite workshop rides in the Checkout metadata, and the paid webhook offers every online member."""
    sam, alex = await paying.create_mechanic("Sam"), await paying.create_mechanic("Alex")
    workshop = (await paying.http.post("/api/admin/workshops", json={"name": "Rivera"}, headers=paying.admin)).json()
    for member in (sam, alex):
        await paying.http.put(f"/api/admin/workshops/{workshop['id']}/members/{member}", headers=paying.admin)
    sam_app, alex_app = await paying.connect(sam), await paying.connect(alex)
    body = {"session_type": "video", "plan_code": "quick", "routing": "priority"}
    body["preferred_workshop_id"] = workshop["id"]
    response = await paying.http.post("/api/checkout", json=body, headers=paying.customer)
    assert response.status_code == 200, response.text
    metadata = {k[len("metadata[") : -1]: v for k, v in standin.sessions[-1].items() if k.startswith("metadata[")}
    assert metadata["preferred_workshop_id"] == workshop["id"] and "preferred_mechanic_id" not in metadata
    assert metadata["provider_type"] == "workshop"
    delivered = await _deliver(paying, checkout_event(metadata, session_id=response.json()["checkout_session_id"]))
    request_id = delivered.json()["request_id"]
    for app in (sam_app, alex_app):
        await app.expect("offer", request_id=request_id, kind="priority")
    current = (await paying.http.get(f"/api/session-requests/{request_id}", headers=paying.customer)).json()
    assert current["preferred_workshop_id"] == workshop["id"] and current["preferred_mechanic_id"] is None


async def test_checkout_refuses_unknown_plans(paying: Harness, standin: StripeStandIn) -> None:
    """An unknown plan is a 422 and no Stripe session is created."""
    body = {"session_type": "video", "plan_code": "platinum", "routing": "broadcast"}
    response = await paying.http.post("/api/checkout", json=body, headers=paying.customer)
    assert response.status_code == 422 and "plan_code" in response.json()["message"]
    assert standin.sessions == []


async def test_direct_booking_needs_payment_when_payments_are_on(paying: Harness) -> None:
    """With a Stripe key set, POST /api/session-requests answers 402 payment_required."""
    body = {"session_type": "video", "plan_code": "quick", "routing": "broadcast"}
    response = await paying.http.post("/api/session-requests", json=body, headers=paying.customer)
    assert response.status_code == 402 and response.json()["error"] == "payment_required"


async def test_checkout_is_off_without_a_stripe_key(harness: Harness) -> None:
    """Without a Stripe key, checkout answers 409 payments_disabled and bookings are direct."""
    body = {"session_type": "video", "plan_code": "quick", "routing": "broadcast"}
    response = await harness.http.post("/api/checkout", json=body, headers=harness.customer)
    assert response.status_code == 409 and response.json()["error"] == "payments_disabled"


async def test_paid_checkout_creates_and_routes_the_request(paying: Harness) -> None:
    """A paid checkout.session.completed creates the request and offers it to the favorite."""
    sam = await paying.create_mechanic("Sam")
    sam_app = await paying.connect(sam)
    metadata = _metadata(paying, preferred_mechanic_id=sam, routing="priority", routing_type="priority_broadcast")
    response = await _deliver(paying, checkout_event(metadata))
    assert response.status_code == 200 and response.json()["outcome"] == "created"
    request_id = response.json()["request_id"]
    await sam_app.expect("offer", request_id=request_id, kind="priority")
    current = (await paying.http.get(f"/api/session-requests/{request_id}", headers=paying.customer)).json()
    assert current["status"] == "pending" and current["preferred_mechanic_id"] == sam


async def test_duplicate_event_creates_one_request(paying: Harness) -> None:
    """Stripe delivering the same event twice creates exactly one request."""
    payload = checkout_event(_metadata(paying))
    first = await _deliver(paying, payload)
    second = await _deliver(paying, payload)
    assert (first.json()["outcome"], second.json()["outcome"]) == ("created", "duplicate_event")
    assert await _request_count(paying) == 1


async def test_two_events_for_one_session_create_one_request(paying: Harness) -> None:
    """completed and async_payment_succeeded for the same session, in any order, create one request."""
    metadata = _metadata(paying)
    later = checkout_event(metadata, event_type="checkout.session.async_payment_succeeded", session_id="cs_test_same")
    earlier = checkout_event(metadata, session_id="cs_test_same")
    outcomes = [(await _deliver(paying, p)).json()["outcome"] for p in (later, earlier)]
    assert outcomes == ["created", "duplicate_session"]
    assert await _request_count(paying) == 1


@pytest.mark.parametrize("forgery", ["wrong_secret", "stale", "missing", "tampered"])
async def test_bad_signatures_are_refused(paying: Harness, forgery: str) -> None:
    """A forged signature, a stale timestamp, no header, or a tampered body: 400 and nothing created."""
    payload = checkout_event(_metadata(paying))
    headers: dict[str, str] = {}
    if forgery == "wrong_secret":
        headers["Stripe-Signature"] = sign(payload, "whsec_attacker")
    elif forgery == "stale":
        headers["Stripe-Signature"] = sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    elif forgery == "tampered":
        headers["Stripe-Signature"] = sign(payload, WEBHOOK_SECRET)
        payload = payload.replace('"paid"', '"paid" ')
    response = await paying.http.post("/api/stripe/webhook", content=payload, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "invalid_signature"
    assert await _request_count(paying) == 0


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {},
        {"customer_id": "x"},
        {"session_type": "video", "plan_code": "gold", "routing": "broadcast"},
        {"customer_id": "alice", "session_type": "video", "plan_code": "standard", "routing": "broadcast"},
    ],
)
async def test_malformed_metadata_is_a_clear_400(paying: Harness, metadata: dict[str, str] | None) -> None:
    """Metadata that cannot make a request: 400 invalid_metadata, nothing created."""
    if metadata is not None and "session_type" in metadata and "customer_id" not in metadata:
        metadata = {**metadata, "customer_id": paying.customer_id}
    response = await _deliver(paying, checkout_event(metadata))
    assert response.status_code == 400 and response.json()["error"] == "invalid_metadata"
    assert await _request_count(paying) == 0


@pytest.mark.parametrize(
    "payload",
    [
        "[]",
        '"text"',
        '{"id": "evt_1", "type": "checkout.session.completed", "data": []}',
        '{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": "cs_1"}}',
        '{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": null}}',
    ],
)
async def test_validly_signed_events_of_an_odd_shape_are_a_clear_400(paying: Harness, payload: str) -> None:
    """A signed payload that is not an event object, or whose data.object is not a session: 400, never a 500."""
    response = await _deliver(paying, payload)
    assert response.status_code == 400 and response.json()["error"] == "invalid_metadata"
    assert await _request_count(paying) == 0


async def test_a_customer_name_with_a_lone_surrogate_is_stored_safely(paying: Harness) -> None:
    """A webhook whose customer_name holds a lone surrogate creates the request (Stripe would retry a 500)."""
    metadata = {**_metadata(paying), "customer_name": "Jordan \ud800"}
    response = await _deliver(paying, checkout_event(metadata))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "created"


async def test_unhandled_events_and_unpaid_sessions_are_acknowledged(paying: Harness) -> None:
    """Other event types, and a completed but unpaid session, answer 200 and create nothing."""
    other = checkout_event(_metadata(paying), event_type="customer.created")
    unpaid = checkout_event(_metadata(paying), payment_status="unpaid")
    assert (await _deliver(paying, other)).json()["outcome"] == "ignored"
    assert (await _deliver(paying, unpaid)).json()["outcome"] == "not_paid"
    assert await _request_count(paying) == 0


async def test_favorite_deleted_before_the_webhook_becomes_a_broadcast(paying: Harness) -> None:
    """The favorite was deleted between checkout and webhook: a plain broadcast, and the log says why."""
    sam = await paying.create_mechanic("Sam")
    alex = await paying.create_mechanic("Alex")
    alex_app = await paying.connect(alex)
    await paying.http.delete(f"/api/admin/mechanics/{sam}", headers=paying.admin)
    metadata = _metadata(paying, preferred_mechanic_id=sam, routing="priority", routing_type="priority_broadcast")
    response = await _deliver(paying, checkout_event(metadata))
    request_id = response.json()["request_id"]
    await alex_app.expect("offer", request_id=request_id, kind="broadcast")
    created = (await paying.events(request_id))[0]
    assert created["kind"] == "created" and "favorite no longer available" in created["detail"]


async def test_metrics_count_webhook_outcomes(paying: Harness) -> None:
    """/metrics (from loopback) counts webhook events by outcome."""
    await _deliver(paying, checkout_event(_metadata(paying)))
    body = (await paying.http.get("/metrics", headers=paying.admin)).text
    assert 'favdispatch_webhook_events_total{outcome="created"}' in body


async def test_checkout_refuses_a_second_open_request_for_the_same_favorite(
    paying: Harness, standin: StripeStandIn
) -> None:
    """A paid, still open request for Sam: a new checkout for Sam is 409 naming it, and Stripe is not called."""
    sam = await paying.create_mechanic("Sam")
    metadata = _metadata(paying, preferred_mechanic_id=sam, routing="priority", routing_type="priority_broadcast")
    paid = (await _deliver(paying, checkout_event(metadata))).json()["request_id"]
    body = {"session_type": "video", "plan_code": "quick", "routing": "priority", "preferred_mechanic_id": sam}
    response = await paying.http.post("/api/checkout", json=body, headers=paying.customer)
    assert response.status_code == 409
    assert response.json()["error"] == "request_already_open" and response.json()["request_id"] == paid
    assert standin.sessions == []


async def test_checkout_with_an_idempotency_key_creates_one_stripe_session(
    paying: Harness, standin: StripeStandIn
) -> None:
    """A retried checkout with the same key answers the same Checkout Session; Stripe is called once."""
    body = {"session_type": "video", "plan_code": "quick", "routing": "broadcast"}
    headers = {**paying.customer, "Idempotency-Key": "checkout-1"}
    first = await paying.http.post("/api/checkout", json=body, headers=headers)
    again = await paying.http.post("/api/checkout", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and len(standin.sessions) == 1


async def test_a_signed_event_nested_too_deeply_is_a_clear_400(paying: Harness) -> None:
    """Even from Stripe's side of the signature: a clear 400 (never a 500, which Stripe would retry for days)."""
    response = await _deliver(paying, "[" * 30_000 + "]" * 30_000)  # within MAX_BODY_BYTES
    assert response.status_code == 400 and response.json()["error"] == "invalid_metadata", response.text
