"""Schema fuzzing: schemathesis generates requests for every operation in /openapi.json, sent with each role's
token. Every answer must be a documented status with a body valid against its schema (the suite's response
check, `tests/openapi_check.py`), and never a 5xx."""

from __future__ import annotations

import warnings

import pytest
import schemathesis
from hypothesis.errors import NonInteractiveExampleWarning
from schemathesis.core import NotSet

from api.auth import Role
from api.contract import OPENAPI
from tests.helpers import Harness

EXAMPLES_PER_OPERATION = 8


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.MECHANIC, Role.ADMIN])
async def test_generated_requests_get_documented_answers(harness: Harness, role: Role) -> None:
    token = harness.token(role)
    schema = schemathesis.openapi.from_dict(OPENAPI)
    sent = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        for result in schema.get_all_operations():
            operation = result.ok()
            strategy = operation.as_strategy()
            for _ in range(EXAMPLES_PER_OPERATION):
                case = strategy.example()
                request = harness.http.build_request(
                    case.method,
                    case.formatted_path,
                    params=case.query or None,
                    json=None if isinstance(case.body, NotSet) else case.body,
                    headers={"Authorization": f"Bearer {token}"},
                )
                response = await harness.http.send(request, stream=True)
                try:
                    # The favorites stream never ends by itself: that it opened is all there is to read.
                    streaming = response.headers.get("content-type", "").startswith("text/event-stream")
                    answer = "a stream" if streaming else (await response.aread())[:300].decode(errors="replace")
                    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {answer}"
                finally:
                    await response.aclose()
                    sent += 1
    assert sent == len(OPENAPI_OPERATIONS) * EXAMPLES_PER_OPERATION


OPENAPI_OPERATIONS = [(method, path) for path, methods in OPENAPI["paths"].items() for method in methods]
