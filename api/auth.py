"""JWT (HS256) tokens: who the caller is and in which role.

A verified token is remembered per process until it expires (bounded), so a client polling with the same token
pays the HMAC and the claim checks once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import jwt

from base.errors import InvalidToken
from base.text import printable

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096
CACHE_LIMIT = 10_000


class Role(StrEnum):
    CUSTOMER = "customer"
    MECHANIC = "mechanic"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    name: str | None


def decode_token(token: str | None, secret: str, audience: str | None = None) -> tuple[Principal, float]:
    """The token's principal and expiry (epoch seconds); InvalidToken for anything else. A token minted for an
    `audience` (a stream ticket) is only valid where that audience is asked for, and only there."""
    if not token:
        raise InvalidToken("A bearer token is required.")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("The token is too large.")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=audience, options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("The token has expired.") from None
    except jwt.PyJWTError:
        raise InvalidToken("The token is invalid.") from None
    try:
        sub = str(uuid.UUID(str(claims["sub"])))
        role = Role(claims["role"])
        expires = float(claims["exp"])
    except (ValueError, TypeError):
        raise InvalidToken("The token's sub must be a UUID and its role one of customer, mechanic, admin.") from None
    return Principal(sub=sub, role=role, name=printable(claims.get("name"))), expires


class TokenVerifier:
    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str | None) -> Principal:
        now = time.time()
        if token is not None:
            known = self._verified.get(token)
            if known is not None and known[1] > now:
                return known[0]
        principal, expires = decode_token(token, self._secret)
        assert token is not None
        if len(self._verified) >= CACHE_LIMIT:
            self._verified = {t: v for t, v in self._verified.items() if v[1] > now}
            while len(self._verified) >= CACHE_LIMIT:  # all still valid: forget the oldest
                del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires)
        return principal


def mint_token(secret: str, *, sub: str, role: Role, name: str | None = None, ttl_s: int = 7 * 24 * 3600) -> str:
    claims: dict[str, object] = {"sub": sub, "role": role.value, "exp": int(time.time()) + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


STREAM_TICKET_AUDIENCE = "favorites-stream"
STREAM_TICKET_TTL_S = 60


def mint_stream_ticket(secret: str, principal: Principal) -> str:
    """A short-lived token for the favorites stream's URL (`EventSource` cannot send headers): valid there only,
    for a minute, so one seen in a log or a browser's history opens nothing else and soon nothing at all."""
    claims = {
        "sub": principal.sub,
        "role": principal.role.value,
        "aud": STREAM_TICKET_AUDIENCE,
        "exp": int(time.time()) + STREAM_TICKET_TTL_S,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_stream_ticket(secret: str, ticket: str) -> Principal:
    return decode_token(ticket, secret, audience=STREAM_TICKET_AUDIENCE)[0]
