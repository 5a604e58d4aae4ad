"""What dispatch tells mechanics' devices, as envelopes for the delivery floor.

A device holds a request's offer under the request id as topic and its attempt as version, so the same offer
reaches a device once however many paths deliver it, and a revocation reaches only the devices holding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from base.clock import iso
from delivery.close_codes import CloseCode
from delivery.envelope import Envelope
from delivery.hub import Connection, Hub
from delivery.uvicorn_protocols import TextFrame
from dispatch import frames
from dispatch.metrics import OFFERS_TO_OFFLINE
from dispatch.models import OfferKind, RevokeReason, SessionRequest, offer_id
from dispatch.wording import DEFAULT_CUSTOMER_NAME


def _raw(frame: frames.ServerFrame) -> msgspec.Raw:
    """Encoded once here, carried as is inside the envelope, written as is to every socket."""
    return msgspec.Raw(frames.encode(frame))


@dataclass(frozen=True)
class Greeting:
    """A frame for one device that just connected (or missed frames); offers carry their topic and version, a
    revocation the topic it `releases`."""

    frame: frames.ServerFrame
    topic: str | None = None
    version: int | None = None
    releases: str | None = None


def hand_over(connection: Connection, greetings: list[Greeting]) -> None:
    """Write greetings to one device; offers it already holds at that attempt are not repeated."""
    for greeting in greetings:
        frame = TextFrame(frames.encode(greeting.frame))
        if greeting.releases is not None:
            connection.topics.pop(greeting.releases, None)
            connection.write(frame)
        elif greeting.topic is not None and greeting.version is not None:
            connection.offer(frame, greeting.topic, greeting.version)
        else:
            connection.write(frame)


def offer_frame(request: SessionRequest, kind: OfferKind, workshop_name: str | None = None) -> frames.Offer:
    """`workshop_name`: the favorite workshop a priority offer goes to its members for."""
    return frames.Offer(
        offer_id=offer_id(request.id, request.attempt, kind),
        request_id=request.id,
        kind=kind.value,
        customer_name=request.customer_name or DEFAULT_CUSTOMER_NAME,
        session_type=request.session_type,
        expires_at=iso(request.priority_deadline) if kind is OfferKind.PRIORITY else None,
        attempt=request.attempt,
        workshop_name=workshop_name if kind is OfferKind.PRIORITY else None,
    )


def assigned_frame(request: SessionRequest) -> frames.Assigned:
    return frames.Assigned(
        request_id=request.id,
        customer_name=request.customer_name or DEFAULT_CUSTOMER_NAME,
        session_type=request.session_type,
        accepted_at=iso(request.accepted_at),
    )


class Offers:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def priority(
        self, request: SessionRequest, *, to: tuple[str, ...], repeat: bool = False, workshop_name: str | None = None
    ) -> None:
        """To every device of the favorite, or of each member of the favorite workshop `workshop_name` (`repeat`:
        even devices that already hold this attempt)."""
        if not to:
            return
        reached = await self._hub.publish(
            Envelope(
                frame=_raw(offer_frame(request, OfferKind.PRIORITY, workshop_name)),
                to=to,
                topic=request.id,
                version=request.attempt,
                repeat=repeat,
            )
        )
        if reached == 0:  # shown online when it was decided, gone by the time it went out
            OFFERS_TO_OFFLINE.inc()

    async def broadcast(self, request: SessionRequest, excluded: tuple[str, ...]) -> None:
        await self._hub.publish(
            Envelope(
                frame=_raw(offer_frame(request, OfferKind.BROADCAST)),
                exclude=excluded,
                topic=request.id,
                version=request.attempt,
            )
        )

    async def revoke(
        self, request_id: str, reason: RevokeReason, *, to: tuple[str, ...] | None = None, but: str | None = None
    ) -> None:
        """Withdraw an offer from the devices holding it (only those of `to`, or all but `but`'s)."""
        await self._hub.publish(
            Envelope(
                frame=_raw(frames.OfferRevoked(request_id=request_id, reason=reason.value)),
                to=to,
                exclude=(but,) if but else (),
                to_holders_of=request_id,
                release=True,
            )
        )

    async def tell(
        self,
        mechanic_id: str,
        frame: frames.ServerFrame,
        *,
        releasing: str | None = None,
        skip: str | None = None,
    ) -> None:
        """A frame to every device of one mechanic but the connection `skip` (answered by its caller);
        `releasing`: only to the devices holding that request, which drop it."""
        await self._hub.publish(
            Envelope(
                frame=_raw(frame),
                to=(mechanic_id,),
                skip_connection=skip,
                to_holders_of=releasing,
                release=releasing is not None,
            )
        )

    async def disconnect(self, mechanic_id: str, code: CloseCode) -> None:
        await self._hub.disconnect(mechanic_id, code)
