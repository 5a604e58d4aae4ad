"""Text from outside (bodies, frames, tokens, webhooks) made safe to store and send: valid Unicode without
control characters, bounded length. PostgreSQL refuses a NUL in text outright."""

from __future__ import annotations

import re

MAX_NAME = 200  # the width of every name column

# What a text field of a body or frame may hold: no control characters (NUL among them) and no lone surrogates.
PLAIN_TEXT = r"^[^\x00-\x1f\x7f\ud800-\udfff]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(value: object, max_length: int = MAX_NAME) -> str | None:
    """A display name: lone surrogates replaced, control characters dropped, trimmed, at most `max_length`; None
    for anything not text."""
    if not isinstance(value, str):
        return None
    cleaned = _CONTROL.sub("", value.encode("utf-8", "replace").decode("utf-8")).strip()[:max_length]
    return cleaned or None
