"""Sending Web Push at the api edge, as Stripe is: VAPID keys (RFC 8292) and pywebpush's encryption (RFC 8291).

`pywebpush.webpush_async` posts through one aiohttp session per process, so a push never blocks the event loop.
"""

from __future__ import annotations

import base64

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from dispatch.pushes import Push, PushRefused, Subscription

TIMEOUT_S = 10.0


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
    def __init__(self, private_key: str, subject: str) -> None:
        self._vapid = Vapid.from_string(private_key=private_key)
        self._subject = subject
        self._session: aiohttp.ClientSession | None = None

    async def send(self, subscription: Subscription, push: Push) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
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
            )
        except WebPushException as failure:
            if failure.status_code is not None:
                raise PushRefused(failure.status_code) from failure
            raise OSError(failure.message) from failure
        except aiohttp.ClientError as unreachable:
            raise OSError(str(unreachable)) from unreachable

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
