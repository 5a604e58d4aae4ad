"""Stripe at the boundary: Checkout Sessions through the official library's async client, and the webhook.

Checkout carries the customer's routing choice and experiment arm in its metadata; the webhook verifies
`Stripe-Signature` (the library's default 300 s tolerance) and hands paid checkouts to `Fulfillment`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import schemas
from api.auth import Role
from api.context import authenticate, new_request_from, services
from api.idempotency import once
from api.responses import read_body, read_json, typed
from api.runtime import Services
from api.schemas import BookingBody
from api.stripe_gateway import verify_event
from base.errors import (
    InvalidInput,
    InvalidMetadata,
    InvalidWebhook,
    PaymentsDisabled,
)
from dispatch.fulfillment import Outcome, PaidCheckout, metadata_for
from dispatch.metrics import WEBHOOK_EVENTS
from dispatch.models import Routing, RoutingType

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


async def checkout(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)
    stripe = svc.stripe
    if stripe is None:
        raise PaymentsDisabled()

    async def create() -> Response:
        new = new_request_from(principal, await read_json(request, BookingBody))
        prepared = await svc.dispatcher.prepare(new)
        await svc.dispatcher.refuse_second_open_request(prepared)
        routing = prepared.routing
        routing_type = RoutingType.BROADCAST if routing is Routing.BROADCAST else RoutingType.PRIORITY_BROADCAST
        plan = await svc.plans.get(prepared.plan_code)
        metadata = metadata_for(new, prepared, routing_type.value)
        session_id, url = await stripe.create_checkout(plan, principal.sub, metadata)
        # The session lives at Stripe; like Stripe's own API, answer 200 with where to send the customer.
        return typed(schemas.CheckoutCreated(checkout_session_id=session_id, url=url))

    return await once(request, svc.database, principal.sub, svc.settings.max_body_bytes, create)


async def webhook(request: Request) -> Response:
    svc = services(request)
    try:
        payload = await read_body(request, svc.settings.max_body_bytes)
        event = verify_event(svc.settings, payload, request.headers.get("stripe-signature"))
    except InvalidWebhook:
        WEBHOOK_EVENTS.labels(outcome="invalid_signature").inc()
        raise
    outcome, request_id = await _handle(svc, event)
    WEBHOOK_EVENTS.labels(outcome=outcome.value).inc()
    return typed(schemas.WebhookReceived(received=True, outcome=outcome.value, request_id=request_id))


async def _handle(svc: Services, event: Any) -> tuple[Outcome, str | None]:
    if not isinstance(event, dict):
        raise InvalidMetadata("The event must be a JSON object.")
    event_type = str(event.get("type", ""))
    if event_type not in PAID_EVENTS:
        return Outcome.IGNORED, None
    data = event.get("data")
    session = data.get("object") if isinstance(data, dict) else None
    if not isinstance(session, dict):
        raise InvalidMetadata("The event's data.object must be a Checkout Session object.")
    if event_type == "checkout.session.completed" and session.get("payment_status") != "paid":
        return Outcome.NOT_PAID, None  # async payment methods: async_payment_succeeded follows
    metadata = session.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(session.get("id"), str) or not event.get("id"):
        raise InvalidMetadata("The event has no id, or its Checkout Session no metadata object or no id.")
    paid = PaidCheckout(
        event_id=str(event.get("id", "")),
        event_type=event_type,
        checkout_session_id=session["id"],
        metadata={str(k): str(v) for k, v in metadata.items() if v is not None},
    )
    try:
        outcome, request = await svc.fulfillment.fulfill(paid)
    except InvalidInput as error:
        log.error(
            "webhook %s for checkout %s has malformed metadata: %s",
            paid.event_id,
            paid.checkout_session_id,
            error.message,
        )
        WEBHOOK_EVENTS.labels(outcome=Outcome.INVALID.value).inc()
        raise InvalidMetadata(f"Malformed checkout metadata: {error.message}") from None
    return outcome, request.id if request else None


routes = [
    Route("/api/checkout", checkout, methods=["POST"]),
    Route("/api/stripe/webhook", webhook, methods=["POST"]),
]
