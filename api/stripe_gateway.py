"""Stripe at the edge: Checkout Sessions through Stripe's client, webhook signatures checked before anything
else. Stripe's own errors are translated here into the project's error tree."""

from __future__ import annotations

import logging
from typing import Any

import stripe

from api.settings import Settings
from base.decoding import decode_lenient
from base.errors import (
    IdempotencyKeyReused,
    InvalidMetadata,
    InvalidWebhook,
    PaymentProviderError,
    PaymentsDisabled,
    ProtocolError,
)
from dispatch.plans import Plan

log = logging.getLogger(__name__)


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

    async def create_checkout(
        self, plan: Plan, customer_id: str, metadata: dict[str, str], *, idempotency_key: str | None = None
    ) -> tuple[str, str]:
        """A Checkout Session's id and URL. With an `idempotency_key` Stripe answers a retry with the session it
        created first, and refuses the key with other parameters (IdempotencyKeyReused)."""
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
            session = await self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key} if idempotency_key else None,
            )
        except stripe.IdempotencyError:
            raise IdempotencyKeyReused() from None
        except stripe.StripeError as error:
            log.warning("Stripe refused a checkout: %s", error)
            raise PaymentProviderError() from None
        return str(session.id), str(session.url)


def verify_event(settings: Settings, payload: bytes, signature: str | None) -> Any:
    """The event as Stripe sent it, once its signature and timestamp verify; InvalidWebhook otherwise."""
    if settings.stripe_webhook_secret is None:
        raise PaymentsDisabled("Webhooks are not configured: set STRIPE_WEBHOOK_SECRET.")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, str(settings.stripe_webhook_secret), stripe.Webhook.DEFAULT_TOLERANCE
        )
    except (stripe.SignatureVerificationError, ValueError):
        raise InvalidWebhook() from None
    try:
        return decode_lenient(payload)
    except ProtocolError as malformed:
        raise InvalidMetadata(malformed.message) from None
