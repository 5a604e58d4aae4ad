"""Every HTTP response the suite receives is checked against the schema /openapi.json gives for it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from api.contract import OPENAPI


def _compile_paths() -> list[tuple[re.Pattern[str], str]]:
    patterns = []
    for path in OPENAPI["paths"]:
        regex = "^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"
        patterns.append((re.compile(regex), path))
    # Literal paths before templated ones: /api/mechanics/status is not /api/mechanics/{mechanic_id}/status.
    return sorted(patterns, key=lambda p: p[1].count("{"))


_PATHS = _compile_paths()
checked: list[str] = []  # what was validated, for the test that asserts checking happened at all


ERROR = {"$ref": "#/components/schemas/Error"}


def schema_for(method: str, url_path: str, status: int) -> dict[str, Any] | None:
    """The documented JSON schema of this response; None when a documented operation does not list the status.
    Unknown paths and methods (404, 405) must still answer the documented error shape."""
    for pattern, path in _PATHS:
        if pattern.match(url_path):
            operation = OPENAPI["paths"][path].get(method.lower())
            if operation is None:
                return ERROR if status == 405 else None
            response = operation["responses"].get(str(status))
            if response is None:
                return None
            return response.get("content", {}).get("application/json", {}).get("schema", {})
    return ERROR if status == 404 else None


async def validate_response(response: httpx.Response) -> None:
    """An httpx response hook: documented status, and a body valid against the documented schema."""
    path = response.request.url.path
    if not path.startswith("/api/") and path not in ("/healthz", "/readyz"):
        return
    method = response.request.method
    schema = schema_for(method, path, response.status_code)
    assert schema is not None, f"{method} {path} answered {response.status_code}, which /openapi.json does not list"
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return  # a stream, read by the test as it arrives
    await response.aread()
    if response.headers.get("content-type", "").startswith("application/json"):
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": OPENAPI["components"],
            **schema,
        }
        errors = sorted(Draft202012Validator(root).iter_errors(response.json()), key=str)
        assert not errors, f"{method} {path} {response.status_code}: {errors[0].message} in {response.text[:300]}"
        checked.append(f"{method} {path} {response.status_code}")
