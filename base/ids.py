"""Ids in the API are UUIDs; every module reads a client's id through this one function."""

from __future__ import annotations

import uuid


def canonical_id(value: str) -> str | None:
    """The canonical text of a UUID, or None when `value` is not one (a malformed id is simply not found)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None
