"""Web Push subscriptions: the server's public key, and a mechanic's devices registering or leaving."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.context import caller, services
from api.endpoints import BODY_ERRORS, MECHANIC, Endpoints
from api.push_targets import check_endpoint
from api.responses import read_json, typed
from api.schemas import PushEndpoint, PushSubscriptionBody
from base.errors import InvalidInput, WebPushDisabled

endpoint = Endpoints()

P256DH_BYTES = 65  # an uncompressed P-256 point
AUTH_BYTES = 16


@endpoint(
    "get",
    "/api/push/vapid-public-key",
    "The key browsers subscribe to Web Push with (`applicationServerKey`), and whether push is on.",
    response=schemas.VapidPublicKey,
)
async def vapid_public_key(request: Request) -> Response:
    settings = services(request).settings
    key = settings.vapid_public_key if settings.web_push else None
    return typed(schemas.VapidPublicKey(enabled=settings.web_push, public_key=key))


@endpoint(
    "post",
    "/api/mechanic/push-subscriptions",
    "Register this device for Web Push (a browser's PushSubscription JSON; https endpoints of public push "
    "services only). 201 when new, 200 when you had registered it already, 409 when another mechanic has.",
    MECHANIC,
    body=schemas.PushSubscriptionBody,
    response=schemas.PushSubscriptionSaved,
    status=201,
    also=(200,),
    errors=(401, 403, 409, *BODY_ERRORS),
)
async def subscribe(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    if not svc.settings.web_push:
        raise WebPushDisabled()
    body = await read_json(request, PushSubscriptionBody)
    await check_endpoint(body.endpoint, svc.settings.push_targets())
    p256dh = _key(body.keys.p256dh, "keys.p256dh", P256DH_BYTES)
    auth = _key(body.keys.auth, "keys.auth", AUTH_BYTES)
    is_new = await svc.pushes.subscriptions.save(principal.sub, body.endpoint, p256dh, auth)
    return typed(schemas.PushSubscriptionSaved(endpoint=body.endpoint), status_code=201 if is_new else 200)


@endpoint(
    "delete",
    "/api/mechanic/push-subscriptions",
    "Stop Web Push to this device (idempotent).",
    MECHANIC,
    body=schemas.PushEndpoint,
    status=204,
    errors=(401, 403, *BODY_ERRORS),
)
async def unsubscribe(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    body = await read_json(request, PushEndpoint)
    await svc.pushes.subscriptions.remove(principal.sub, body.endpoint)
    return Response(status_code=204)


def _key(value: str, name: str, size: int) -> str:
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{name} must be base64url.") from None
    if len(decoded) != size or (size == P256DH_BYTES and decoded[0] != 4):
        raise InvalidInput(f"{name} must be {size} bytes" + (" (an uncompressed P-256 key)." if size == 65 else "."))
    return value
