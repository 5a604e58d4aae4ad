"""The documented contract and the code agree: every route is in /openapi.json, every response the suite
receives validates against it (`tests/openapi_check.py`), and every example in docs/protocol.md decodes."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
from starlette.routing import Route

from api.app import create_app
from api.openapi import OPENAPI
from api.settings import Settings
from dispatch import frames
from tests import openapi_check
from tests.helpers import Harness

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


def test_every_route_of_the_app_is_in_the_openapi_document(settings: Settings) -> None:
    app = create_app(settings)
    undocumented = []
    for route in app.routes:
        if isinstance(route, Route) and route.include_in_schema:
            for method in (route.methods or set()) - {"HEAD"}:
                if method.lower() not in OPENAPI["paths"].get(route.path, {}):
                    undocumented.append(f"{method} {route.path}")
    assert not undocumented, f"routes missing from /openapi.json: {undocumented}"
    documented = {(m, p) for p, ops in OPENAPI["paths"].items() for m in ops}
    served = {(m.lower(), r.path) for r in app.routes if isinstance(r, Route) for m in (r.methods or set()) - {"HEAD"}}
    assert documented <= served, f"documented but not served: {documented - served}"


async def test_the_served_document_is_the_generated_one_and_responses_are_checked(harness: Harness) -> None:
    response = await harness.http.get("/openapi.json")
    assert response.json() == msgspec.json.decode(msgspec.json.encode(OPENAPI))
    await harness.create_mechanic()
    assert any(c.startswith("POST /api/admin/mechanics 201") for c in openapi_check.checked)
    required = OPENAPI["components"]["schemas"]["SessionRequest"]["required"]
    assert "status" in required and "id" in required
