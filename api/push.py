"""Web Push subscriptions: the server's public key, and a mechanic's devices registering or leaving."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import schemas
from api.auth import Role
from api.context import authenticate, services
from api.responses import read_json, typed
from api.schemas import PushEndpoint, PushSubscriptionBody
from api.settings import Settings
from base.errors import InvalidInput, WebPushDisabled

P256DH_BYTES = 65  # an uncompressed P-256 point
AUTH_BYTES = 16


async def vapid_public_key(request: Request) -> Response:
    settings = services(request).settings
    key = settings.vapid_public_key if settings.web_push else None
    return typed(schemas.VapidPublicKey(enabled=settings.web_push, public_key=key))


async def subscribe(request: Request) -> Response:
    principal = authenticate(request, Role.MECHANIC)
    svc = services(request)
    if not svc.settings.web_push:
        raise WebPushDisabled()
    body = await read_json(request, PushSubscriptionBody)
    _check_endpoint(body.endpoint, svc.settings)
    p256dh = _key(body.keys.p256dh, "keys.p256dh", P256DH_BYTES)
    auth = _key(body.keys.auth, "keys.auth", AUTH_BYTES)
    is_new = await svc.pushes.subscriptions.save(principal.sub, body.endpoint, p256dh, auth)
    return typed(schemas.PushSubscriptionSaved(endpoint=body.endpoint), status_code=201 if is_new else 200)


async def unsubscribe(request: Request) -> Response:
    principal = authenticate(request, Role.MECHANIC)
    svc = services(request)
    body = await read_json(request, PushEndpoint)
    await svc.pushes.subscriptions.remove(principal.sub, body.endpoint)
    return Response(status_code=204)


def _check_endpoint(endpoint: str, settings: Settings) -> None:
    """Push services are reached over https; plain http only to loopback, and only where a setting allows it
    (the test stand-in): anything else would send mechanics' notifications in the clear, or anywhere."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and settings.push_endpoints_may_be_loopback_http and _is_loopback(parts.hostname):
        return
    raise InvalidInput("endpoint must be an https: URL of a push service.")


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key(value: str, name: str, size: int) -> str:
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{name} must be base64url.") from None
    if len(decoded) != size or (size == P256DH_BYTES and decoded[0] != 4):
        raise InvalidInput(f"{name} must be {size} bytes" + (" (an uncompressed P-256 key)." if size == 65 else "."))
    return value


routes = [
    Route("/api/push/vapid-public-key", vapid_public_key, methods=["GET"]),
    Route("/api/mechanic/push-subscriptions", subscribe, methods=["POST"]),
    Route("/api/mechanic/push-subscriptions", unsubscribe, methods=["DELETE"]),
]
