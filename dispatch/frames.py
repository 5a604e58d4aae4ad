"""The mechanics' socket protocol as types: every frame in both directions is one `msgspec.Struct`.

`docs/protocol.md` describes the same frames (a test decodes each of its examples with these types). Decoding
validates and names the field at fault; encoding writes the JSON the apps read.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from base.decoding import decode as decode_json
from base.errors import FavdispatchError, InvalidField, ProtocolError, UnknownType
from base.text import PLAIN_TEXT
from dispatch.models import MAX_ATTEMPT

MAX_FRAME_BYTES = 64 * 1024  # larger frames are refused by the server (close code 1009)
RequestId = uuid.UUID
Attempt = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPT)]
Reason = Annotated[str, msgspec.Meta(max_length=200, pattern=PLAIN_TEXT)]
OfferId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class _Frame(msgspec.Struct, tag_field="type"):
    pass


# Client -> server


class Heartbeat(_Frame, tag="heartbeat"):
    pass


class Ack(_Frame, tag="ack"):
    offer_id: OfferId


class Accept(_Frame, tag="accept"):
    request_id: RequestId
    attempt: Attempt | None = None


class Decline(_Frame, tag="decline"):
    request_id: RequestId


class GiveBack(_Frame, tag="cancel"):
    """A mechanic gives back a request they had accepted."""

    request_id: RequestId
    reason: Reason | None = None


ClientFrame = Heartbeat | Ack | Accept | Decline | GiveBack

# Server -> client


class Welcome(_Frame, tag="welcome"):
    mechanic_id: str
    heartbeat_interval_s: float
    presence_ttl_s: float


class HeartbeatAck(_Frame, tag="heartbeat_ack"):
    pass


class Offer(_Frame, tag="offer"):
    offer_id: str
    request_id: str
    kind: str
    customer_name: str
    session_type: str
    expires_at: str | None
    attempt: int
    # A priority offer to a favorite workshop's members names the workshop the customer chose; None otherwise.
    workshop_name: str | None = None


class OfferRevoked(_Frame, tag="offer_revoked"):
    request_id: str
    reason: str


class Accepted(_Frame, tag="accepted"):
    request_id: str


class Declined(_Frame, tag="declined"):
    request_id: str


class GivenBack(_Frame, tag="given_back"):
    request_id: str


class Assigned(_Frame, tag="assigned"):
    """Sent on every connect for each session assigned to the mechanic and not yet completed."""

    request_id: str
    customer_name: str
    session_type: str
    accepted_at: str | None


class Error(_Frame, tag="error"):
    code: str
    message: str
    request_id: str | None = None


ServerFrame = Welcome | HeartbeatAck | Offer | OfferRevoked | Accepted | Declined | GivenBack | Assigned | Error

_encoder = msgspec.json.Encoder()


def decode(frame: str | bytes) -> ClientFrame:
    """Parse one client frame; a ProtocolError with a precise code names what is wrong."""
    try:
        decoded: ClientFrame = decode_json(frame, ClientFrame, what="frame")  # type: ignore[arg-type]
        return decoded
    except msgspec.ValidationError as error:
        message = str(error)
        if "`$.type`" in message or "missing required field `type`" in message:
            raise UnknownType(f"Unknown or missing message type ({message}).") from None
        if message.startswith("Expected `object`"):
            raise ProtocolError("Frames must be JSON objects.") from None
        raise InvalidField(message) from None


def encode(frame: ServerFrame) -> bytes:
    return _encoder.encode(frame)


def encode_text(frame: ServerFrame) -> str:
    return _encoder.encode(frame).decode()


def error(err: FavdispatchError, request_id: str | None = None) -> str:
    return encode_text(Error(code=err.code, message=err.message, request_id=request_id or err.request_id))
