"""The only fake in the project: a small local HTTP stand-in for Stripe's API (Stripe cannot be reached here).

It answers `POST /v1/checkout/sessions` the way Stripe does and records each form body, so tests can assert
what the real `stripe` library sent. Webhooks need no stand-in: tests sign payloads with the secret exactly
as Stripe does and the real library verifies them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scripts.embedded_redis import free_port


@dataclass
class StripeStandIn:
    base_url: str = ""
    sessions: list[dict[str, str]] = field(default_factory=list)
    _answers: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    async def _create_session(self, request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        form = dict(parse_qsl(body))
        if not request.headers.get("authorization", "").startswith("Bearer sk_test_"):
            return JSONResponse({"error": {"type": "invalid_request_error", "message": "bad key"}}, 401)
        # Stripe's idempotency: a key replays its first answer, and is refused with other parameters.
        key = request.headers.get("idempotency-key")
        if key is not None and key in self._answers:
            first_body, answer = self._answers[key]
            if first_body != body:
                error = {
                    "type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used "
                    "with the same parameters they were first used with.",
                }
                return JSONResponse({"error": error}, 400)
            return JSONResponse(answer, headers={"Idempotent-Replayed": "true"})
        self.sessions.append(form)
        session_id = f"cs_test_{uuid.uuid4().hex}"
        answer = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "payment_status": "unpaid",
            "status": "open",
        }
        if key is not None:
            self._answers[key] = (body, answer)
        return JSONResponse(answer)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/checkout/sessions", self._create_session, methods=["POST"])])


@asynccontextmanager
async def stripe_standin() -> AsyncIterator[StripeStandIn]:
    standin = StripeStandIn()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(standin.app(), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    standin.base_url = f"http://127.0.0.1:{port}"
    try:
        yield standin
    finally:
        server.should_exit = True
        await task


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header computed exactly as Stripe computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def checkout_event(
    metadata: dict[str, str] | None,
    *,
    event_type: str = "checkout.session.completed",
    session_id: str | None = None,
    event_id: str | None = None,
    payment_status: str = "paid",
) -> str:
    session: dict[str, Any] = {
        "id": session_id or f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "payment_status": payment_status,
        "metadata": metadata,
    }
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": session},
        }
    )
