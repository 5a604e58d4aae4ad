"""Every JSON the server reads from outside is decoded here: HTTP bodies, socket frames, the Stripe webhook.

A document that is not well-formed JSON (a syntax error, bytes that are not UTF-8, nesting deep enough to exhaust
the decoder's recursion) is one error, `ProtocolError` (400 `bad_message`), wherever it arrives: never a 500, never
a traceback. A well-formed document of the wrong shape raises msgspec's `ValidationError`, which the caller turns
into its own field-naming error (422 over HTTP, `invalid_field` on the socket).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec

from base.errors import ProtocolError

T = TypeVar("T")


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}  # one per shape: a Decoder is built once and reused


def decode(data: bytes | str, shape: type[T], *, what: str = "body") -> T:
    """`data` as `shape` (`Any`: plain dicts and lists); ProtocolError when it is not well-formed JSON."""
    if isinstance(data, bytes) and not data.isascii():
        # msgspec skips the fields a shape does not read without checking their bytes: checked whole here, so
        # that bytes which are not UTF-8 are refused wherever they are.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"The {what} must be UTF-8 JSON text.") from None
    try:
        decoder = _decoders.get(shape) or _decoders.setdefault(shape, msgspec.json.Decoder(shape))
        decoded: T = decoder.decode(data)
    except msgspec.ValidationError:
        raise
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ProtocolError(f"The {what} must be a JSON object (UTF-8 JSON text).") from None
    except RecursionError:
        raise ProtocolError(f"The {what} is nested too deeply.") from None
    return decoded


def decode_lenient(data: bytes) -> Any:
    """`data` as plain dicts and lists, accepting what JSON allows and msgspec refuses (a lone surrogate escape,
    which a signed Stripe event may carry in a customer's name and must not be refused: Stripe would retry it for
    days); ProtocolError when it is not JSON or nests too deeply."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ProtocolError("The event is nested too deeply.") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise ProtocolError("The event must be JSON (UTF-8 JSON text).") from None
