"""The HTTP contract as types: every request body the API reads is one `msgspec.Struct`.

Decoding a body validates it (types, lengths, unknown enum values are left to the domain's own messages), and
the OpenAPI document's request schemas are generated from the same types.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Short = Annotated[str, msgspec.Meta(max_length=20)]
Id = Annotated[str, msgspec.Meta(max_length=64)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class BookingBody(msgspec.Struct, frozen=True):
    """`POST /api/session-requests` and `POST /api/checkout`."""

    session_type: Short
    plan_code: Short
    routing: Short = "broadcast"
    preferred_mechanic_id: Id | None = None
    provider_type: Short | None = None


class FavoriteBody(msgspec.Struct, frozen=True):
    provider_id: Id
    provider_type: Short | None = None


class MechanicBody(msgspec.Struct, frozen=True):
    name: Name
    provider_type: Short | None = None
