"""Text from outside (tokens, webhooks) made safe to store and send: valid Unicode, bounded length."""

from __future__ import annotations

MAX_NAME = 200  # the width of every name column


def printable(value: object, max_length: int = MAX_NAME) -> str | None:
    """A display name: lone surrogates replaced, trimmed, at most `max_length`; None for anything not text."""
    if not isinstance(value, str):
        return None
    cleaned = value.encode("utf-8", "replace").decode("utf-8").strip()[:max_length]
    return cleaned or None
