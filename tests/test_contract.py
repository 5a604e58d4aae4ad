"""The documented contract and the code agree: every route is in /openapi.json, every response the suite
receives validates against it (`tests/openapi_check.py`), and every example in docs/protocol.md decodes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import msgspec
from starlette.routing import Route

from api import schemas
from api.app import create_app
from api.auth import Role
from api.contract import OPENAPI, OPERATIONS
from api.settings import Settings
from dispatch import frames
from dispatch.mechanics import ProviderType
from dispatch.models import Routing, SessionType
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


def test_the_bodys_choice_fields_are_the_domains_enums() -> None:
    """A choice the decoder accepts is one the domain knows, and the other way round."""
    assert set(get_args(schemas.SessionTypeChoice)) == {t.value for t in SessionType}
    assert set(get_args(schemas.RoutingChoice)) == {r.value for r in Routing}
    assert set(get_args(schemas.ProviderTypeChoice)) == {p.value for p in ProviderType}


async def test_every_endpoint_lets_in_exactly_the_roles_it_declares(harness: Harness) -> None:
    """The declaration is the guard: no token is 401 and a role it does not declare is 403, on every route (the
    ids in paths need not exist: the caller is refused before anything is looked up)."""
    refused = []
    for operation in OPERATIONS:
        if not operation.roles or operation.checks_its_caller:
            continue
        path = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", operation.path)
        response = await harness.http.request(operation.method.upper(), path)
        if response.status_code != 401:
            refused.append(f"{operation.method} {operation.path} without a token: {response.status_code}")
        for role in set(Role) - {Role(r) for r in operation.roles}:
            token = harness.auth(harness.token(role))
            response = await harness.http.request(operation.method.upper(), path, headers=token)
            if response.status_code != 403:
                refused.append(f"{operation.method} {operation.path} as {role.value}: {response.status_code}")
    assert refused == []
