"""JWT (HS256) tokens: who the caller is and in which role."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import jwt

ALGORITHM = "HS256"


class Role(StrEnum):
    CUSTOMER = "customer"
    MECHANIC = "mechanic"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    name: str | None


class InvalidToken(Exception):
    """Missing, malformed, badly signed or expired; the boundary answers 401 or closes 4401."""


def decode_token(token: str | None, secret: str) -> Principal:
    if not token:
        raise InvalidToken("A bearer token is required.")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("The token has expired.") from None
    except jwt.PyJWTError:
        raise InvalidToken("The token is invalid.") from None
    try:
        sub = str(uuid.UUID(str(claims["sub"])))
        role = Role(claims["role"])
    except ValueError:
        raise InvalidToken("The token's sub must be a UUID and its role one of customer, mechanic, admin.") from None
    name = claims.get("name")
    return Principal(sub=sub, role=role, name=name if isinstance(name, str) else None)


def mint_token(secret: str, *, sub: str, role: Role, name: str | None = None, ttl_s: int = 7 * 24 * 3600) -> str:
    claims: dict[str, object] = {"sub": sub, "role": role.value, "exp": int(time.time()) + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
