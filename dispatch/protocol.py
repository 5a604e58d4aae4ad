"""The mechanics' socket protocol: every message type, how it is decoded and encoded, and the close codes.

This module is the contract `docs/protocol.md` describes. Messages are JSON objects with a `type`. The socket
endpoint decodes a frame, calls the domain, and encodes the answer; nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from dispatch.errors import DomainError

MAX_FRAME_BYTES = 64 * 1024


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401  # missing, invalid or expired token
    FORBIDDEN = 4403  # a valid token without the mechanic role
    MECHANIC_NOT_FOUND = 4404  # unknown or deleted mechanic (also sent when an admin deletes them)


class ProtocolError(DomainError):
    """A frame that is not a valid client message; answered with an `error` frame, the socket stays open."""

    code = "bad_message"
    status = 400


# Client -> server


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class Ack:
    offer_id: str


@dataclass(frozen=True)
class Accept:
    request_id: str
    attempt: int | None = None


@dataclass(frozen=True)
class Decline:
    request_id: str


@dataclass(frozen=True)
class GiveBack:
    """`{"type":"cancel"}`: a mechanic gives back a request they had accepted."""

    request_id: str
    reason: str | None = None


ClientMessage = Heartbeat | Ack | Accept | Decline | GiveBack


def decode(frame: str | bytes) -> ClientMessage:
    """Parse one client frame; raises ProtocolError with a precise code for anything else."""
    try:
        raw = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("Frames must be JSON objects.") from None
    if not isinstance(raw, dict):
        raise ProtocolError("Frames must be JSON objects.")
    kind = raw.get("type")
    if kind == "heartbeat":
        return Heartbeat()
    if kind == "ack":
        return Ack(offer_id=_text(raw, "offer_id"))
    if kind == "accept":
        attempt = raw.get("attempt")
        if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool)):
            raise _MissingField("attempt must be an integer.")
        return Accept(request_id=_text(raw, "request_id"), attempt=attempt)
    if kind == "decline":
        return Decline(request_id=_text(raw, "request_id"))
    if kind == "cancel":
        reason = raw.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _MissingField("reason must be a string.")
        return GiveBack(request_id=_text(raw, "request_id"), reason=reason[:200] if reason else None)
    raise _UnknownType(f"Unknown message type {kind!r}." if kind is not None else "Messages need a type.")


class _UnknownType(ProtocolError):
    code = "unknown_type"


class _MissingField(ProtocolError):
    code = "invalid_field"


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value or len(value) > 100:
        raise _MissingField(f"{name} is required and must be a non-empty string.")
    return value


# Server -> client


def _encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def welcome(mechanic_id: str, heartbeat_interval_s: float, presence_ttl_s: float) -> str:
    return _encode(
        {
            "type": "welcome",
            "mechanic_id": mechanic_id,
            "heartbeat_interval_s": heartbeat_interval_s,
            "presence_ttl_s": presence_ttl_s,
        }
    )


def heartbeat_ack() -> str:
    return _encode({"type": "heartbeat_ack"})


def offer(
    *,
    offer_id: str,
    request_id: str,
    kind: str,
    customer_name: str,
    session_type: str,
    expires_at: str | None,
    attempt: int,
) -> str:
    return _encode(
        {
            "type": "offer",
            "offer_id": offer_id,
            "request_id": request_id,
            "kind": kind,
            "customer_name": customer_name,
            "session_type": session_type,
            "expires_at": expires_at,
            "attempt": attempt,
        }
    )


def offer_revoked(request_id: str, reason: str) -> str:
    return _encode({"type": "offer_revoked", "request_id": request_id, "reason": reason})


def accepted(request_id: str) -> str:
    return _encode({"type": "accepted", "request_id": request_id})


def ok(kind: str, request_id: str) -> str:
    """Confirms a decline or a give-back to the device that sent it."""
    return _encode({"type": kind, "request_id": request_id})


def error(err: DomainError, request_id: str | None = None) -> str:
    return _encode(
        {"type": "error", "code": err.code, "message": err.message, "request_id": request_id or err.request_id}
    )
