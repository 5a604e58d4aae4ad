"""Sending Web Push at the api edge, as Stripe is: VAPID keys (RFC 8292) and pywebpush's encryption (RFC 8291).

`pywebpush.webpush_async` posts through one aiohttp session per process, so a push never blocks the event loop.
"""

from __future__ import annotations

import base64
import ipaddress
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from api.push_targets import PublicOnlyResolver, PushTargets
from dispatch.pushes import Push, PushRefused, Subscription


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_vapid_private_key() -> str:
    """A fresh P-256 private key as VAPID_PRIVATE_KEY takes it: the raw 32 bytes, base64url."""
    private = ec.generate_private_key(ec.SECP256R1())
    return b64url(private.private_numbers().private_value.to_bytes(32, "big"))


def vapid_public_key(private_key: str) -> str:
    """The public key browsers subscribe with (`applicationServerKey`): the uncompressed point, base64url."""
    public = Vapid.from_string(private_key=private_key).public_key
    return b64url(public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


class WebPushSender:
    def __init__(self, private_key: str, subject: str, timeout_s: float, targets: PushTargets) -> None:
        """`timeout_s`: to connect, and again to read the answer (a push service that accepts the connection and
        never answers costs one attempt this long, and no other device anything)."""
        self._vapid = Vapid.from_string(private_key=private_key)
        self._subject = subject
        self._timeout = aiohttp.ClientTimeout(connect=timeout_s, sock_read=timeout_s)
        self._targets = targets
        self._session: aiohttp.ClientSession | None = None

    async def send(self, subscription: Subscription, push: Push) -> None:
        self._refuse_private_address(subscription.endpoint)
        if self._session is None:
            # Every connection goes through the policy's resolver: a name that now points inside is refused.
            connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(self._targets))
            self._session = aiohttp.ClientSession(connector=connector)
        try:
            await webpush_async(
                subscription_info={
                    "endpoint": subscription.endpoint,
                    "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                },
                data=push.payload,
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},  # a new dict each time: pywebpush fills in `aud` and `exp`
                ttl=push.ttl_s,
                headers={"Urgency": push.urgency, "Topic": push.topic},
                aiohttp_session=self._session,
                # pywebpush hands this to aiohttp's `post`; its default (None) would switch the session's off.
                timeout=self._timeout,
            )
        except WebPushException as failure:
            if failure.status_code is not None:
                raise PushRefused(failure.status_code) from failure
            raise OSError(failure.message) from failure
        except (aiohttp.ClientError, TimeoutError) as unreachable:
            raise OSError(str(unreachable) or type(unreachable).__name__) from unreachable

    def _refuse_private_address(self, endpoint: str) -> None:
        """An address in the URL is connected to without resolving: checked here (one registered before the
        registration check existed, say)."""
        host = (urlsplit(endpoint).hostname or "").strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        if not self._targets.allows_address(address):
            raise OSError(f"push to {host} refused: it is not a public push service")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
