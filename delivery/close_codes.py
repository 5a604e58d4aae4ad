"""The one table of WebSocket close codes the server sends (`docs/protocol.md` lists the same)."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # Redis unreachable, or the client fell too far behind: reconnect with backoff
    UNAUTHORIZED = 4401  # missing, invalid or expired token
    FORBIDDEN = 4403  # a valid token without the mechanic role
    MECHANIC_NOT_FOUND = 4404  # unknown or deleted mechanic (also sent when an admin deletes them)
    PRESENCE_TIMEOUT = 4408  # nothing received for PRESENCE_TTL_S: reconnect
    TOO_MANY_FRAMES = 4429  # past the per-socket frame rate limit: reconnect with backoff


MEANING: dict[int, str] = {
    CloseCode.NORMAL: "closed normally",
    CloseCode.GOING_AWAY: "the server is going away: reconnect",
    CloseCode.MESSAGE_TOO_BIG: "a frame was over the size limit",
    CloseCode.SERVICE_RESTART: "the server is restarting: reconnect",
    CloseCode.TRY_AGAIN_LATER: "the server cannot serve now (Redis unreachable, or this client fell behind): "
    "reconnect with backoff",
    CloseCode.UNAUTHORIZED: "the token is missing, invalid or expired: get a new one",
    CloseCode.FORBIDDEN: "the token is valid but not a mechanic's",
    CloseCode.MECHANIC_NOT_FOUND: "this mechanic does not exist (or was deleted)",
    CloseCode.PRESENCE_TIMEOUT: "nothing was received for the presence TTL: heartbeat, and reconnect",
    CloseCode.TOO_MANY_FRAMES: "too many frames a second: reconnect with backoff",
}


def meaning(code: int | None) -> str:
    """What a close code says, in words (for tools and logs)."""
    if code is None:
        return "the connection dropped without a close frame"
    return MEANING.get(code, "an unexpected close code")
