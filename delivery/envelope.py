"""The pub/sub envelope: one frame, and which sockets on every process should get it.

Sockets are addressed by owner (`to`, `exclude`) and by topic: a socket that was sent a frame under a topic
`holds` that topic at that `version`. The same topic and version reach a socket once unless `repeat`; a frame
`to_holders_of` a topic reaches only the sockets holding it, and `release` drops the topic from them. Nothing
here knows what a topic means (dispatch uses a request id, and its attempt as the version).
"""

from __future__ import annotations

import msgspec


class Envelope(msgspec.Struct, frozen=True, omit_defaults=True):
    frame: msgspec.Raw = msgspec.Raw(b"")
    to: tuple[str, ...] | None = None  # None: every connected socket but `exclude`
    exclude: tuple[str, ...] = ()
    skip_connection: str | None = None  # the one socket its sender answered directly
    topic: str | None = None
    version: int | None = None
    repeat: bool = False
    to_holders_of: str | None = None
    release: bool = False
    close_code: int | None = None
    origin: str | None = None  # the publishing process, which delivered it to its own sockets itself


def delivers_once(envelope: Envelope) -> bool:
    """Whether delivering the envelope to a socket again changes nothing: an offer at its version, a release, a
    close. Those a process hands its own sockets before publishing (a failed publish is retried, and the retry
    finds them delivered)."""
    if envelope.close_code is not None:
        return True
    if envelope.to_holders_of is not None:
        return envelope.release
    return envelope.topic is not None and envelope.version is not None and not envelope.repeat


encode_envelope = msgspec.json.Encoder().encode
decode_envelope = msgspec.json.Decoder(Envelope).decode
