"""Stripe at the boundary: Checkout Sessions through the official library's async client, and the webhook.

Checkout carries the customer's routing choice and experiment arm in its metadata; the webhook verifies
`Stripe-Signature` (the library's default 300 s tolerance) and hands paid checkouts to `Fulfillment`.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import stripe
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import Role
from api.context import authenticate, new_request_from, services
from api.responses import read_json_object
from api.settings import Settings
from dispatch.errors import (
    InvalidInput,
    InvalidMetadata,
    InvalidWebhook,
    PaymentProviderError,
    PaymentsDisabled,
)
from dispatch.fulfillment import Outcome, PaidCheckout, metadata_for
from dispatch.metrics import WEBHOOK_EVENTS
from dispatch.models import Routing, RoutingType
from dispatch.plans import Plan

if TYPE_CHECKING:
    from api.app import Services

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        assert settings.stripe_secret_key is not None
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self._client = stripe.StripeClient(
            str(settings.stripe_secret_key),
            base_addresses=base,  # type: ignore[arg-type]
            http_client=stripe.HTTPXClient(),
            max_network_retries=2,
        )
        self._settings = settings

    async def create_checkout(self, plan: Plan, customer_id: str, metadata: dict[str, str]) -> tuple[str, str]:
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": plan.currency,
                        "unit_amount": plan.amount_cents,
                        "product_data": {"name": plan.name},
                    },
                }
            ],
            "success_url": self._settings.checkout_success_url,
            "cancel_url": self._settings.checkout_cancel_url,
            "client_reference_id": customer_id,
            "metadata": metadata,
        }
        try:
            session = await self._client.v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]
        except stripe.StripeError as error:
            log.warning("Stripe refused a checkout: %s", error)
            raise PaymentProviderError() from None
        return str(session.id), str(session.url)


def verify_event(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event as Stripe sent it, once its signature and timestamp verify; InvalidWebhook otherwise."""
    if settings.stripe_webhook_secret is None:
        raise PaymentsDisabled("Webhooks are not configured: set STRIPE_WEBHOOK_SECRET.")
    try:
        stripe.Webhook.construct_event(payload, signature, str(settings.stripe_webhook_secret))
    except (stripe.SignatureVerificationError, ValueError):
        raise InvalidWebhook() from None
    event: dict[str, Any] = json.loads(payload)
    return event


async def checkout(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)
    if svc.stripe is None:
        raise PaymentsDisabled()
    new = new_request_from(principal, await read_json_object(request))
    prepared = await svc.dispatcher.prepare(new)
    routing_type = RoutingType.BROADCAST if prepared.routing is Routing.BROADCAST else RoutingType.PRIORITY_BROADCAST
    plan = await svc.plans.get(prepared.plan_code)
    metadata = metadata_for(new, routing_type.value, prepared.arm.value)
    session_id, url = await svc.stripe.create_checkout(plan, principal.sub, metadata)
    # The session lives at Stripe; like Stripe's own API, answer 200 with where to send the customer.
    return JSONResponse({"checkout_session_id": session_id, "url": url})


async def webhook(request: Request) -> Response:
    svc = services(request)
    try:
        event = verify_event(svc.settings, await request.body(), request.headers.get("stripe-signature"))
    except InvalidWebhook:
        WEBHOOK_EVENTS.labels(outcome="invalid_signature").inc()
        raise
    outcome, request_id = await _handle(svc, event)
    WEBHOOK_EVENTS.labels(outcome=outcome.value).inc()
    return JSONResponse({"received": True, "outcome": outcome.value, "request_id": request_id})


async def _handle(svc: Services, event: dict[str, Any]) -> tuple[Outcome, str | None]:
    event_type = str(event.get("type", ""))
    if event_type not in PAID_EVENTS:
        return Outcome.IGNORED, None
    session = event.get("data", {}).get("object", {})
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
