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
