"""Stripe at the boundary: Checkout Sessions through the official library's async client, and the webhook.

Checkout carries the customer's routing choice and experiment arm in its metadata; the webhook verifies
`Stripe-Signature` (the library's default 300 s tolerance) and hands paid checkouts to `Fulfillment`.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.context import caller, new_request_from, services
from api.endpoints import BODY_ERRORS, CUSTOMER, Endpoints
from api.idempotency import idempotency_key, namespaced
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
from dispatch.fulfillment import Outcome, PaidCheckout

endpoint = Endpoints()
WEBHOOK_EVENTS = Counter("favdispatch_webhook_events_total", "Stripe webhook events, by outcome", ["outcome"])

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@endpoint(
    "post",
    "/api/checkout",
    "Start a Stripe Checkout for a booking; the routing choice rides in its metadata.",
    CUSTOMER,
    body=schemas.BookingBody,
    response=schemas.CheckoutCreated,
    errors=(401, 403, 404, 409, *BODY_ERRORS, 502),
    idempotent=True,
)
async def checkout(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    stripe = svc.stripe
    if stripe is None:
        raise PaymentsDisabled()
    key = await idempotency_key(request, principal.sub, svc.settings.max_body_bytes)
    checkout = await svc.fulfillment.checkout(new_request_from(principal, await read_json(request, BookingBody)))
    stripe_key = namespaced(key) if key is not None else None
    session_id, url = await stripe.create_checkout(
        checkout.plan, principal.sub, checkout.metadata, idempotency_key=stripe_key
    )
    # The session lives at Stripe; like Stripe's own API, answer 200 with where to send the customer.
    return typed(schemas.CheckoutCreated(checkout_session_id=session_id, url=url))


@endpoint(
    "post",
    "/api/stripe/webhook",
    "Stripe's webhook (signed with STRIPE_WEBHOOK_SECRET): a paid checkout creates its request once.",
    response=schemas.WebhookReceived,
    errors=(400, 409, 413),
)
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
