"""The documented contract and the code agree: every example in docs/protocol.md decodes into its frame type."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from dispatch import frames

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _examples() -> list[str]:
    blocks = re.findall(r"```json frames\n(.*?)```", PROTOCOL.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_every_protocol_example_decodes_into_its_frame_type() -> None:
    examples = _examples()
    server = msgspec.json.Decoder(frames.ServerFrame)
    seen: set[str] = set()
    for example in examples:
        kind = msgspec.json.decode(example)["type"]
        if kind in {"heartbeat", "ack", "accept", "decline", "cancel"}:
            decoded: object = frames.decode(example)
        else:
            decoded = server.decode(example)
            # Encoding the decoded frame gives back the documented JSON: the example is exactly what is sent.
            assert msgspec.json.decode(frames.encode(decoded)) == msgspec.json.decode(example)  # type: ignore[arg-type]
        seen.add(type(decoded).__name__)
    every_frame = {t.__name__ for t in (*frames.ClientFrame.__args__, *frames.ServerFrame.__args__)}  # type: ignore[attr-defined]
    assert seen == every_frame, f"frames without an example: {every_frame - seen}"
