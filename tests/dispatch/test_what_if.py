"""Choosing the priority window from the event log: on a generated log whose answer is worked out by hand, through
the API of a real server and through the CLI, both reading the same database."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from base.database import open_database
from dispatch.changes import FAVORITE_ACCEPT
from dispatch.tables import request_events, session_requests
from tests.helpers import PROJECT_ROOT, Harness, server_env

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# (favorite accepted after s, fell back after s, reason, broadcast accepted s after the fallback), served with a
# 900 s window. The last three rows are not counted: cancelled before any outcome, a broadcast, the control arm.
LOG: list[tuple[float | None, float | None, str | None, float | None, dict[str, str]]] = [
    (60, None, None, None, {}),
    (120, None, None, None, {}),
    (400, None, None, None, {}),
    (800, None, None, None, {}),
    (None, 900, "window", 60, {}),
    (None, 900, "window", 180, {}),
    (None, 30, "declined", 120, {}),
    (None, None, None, None, {"status": "cancelled"}),
    (None, None, None, 45, {"routing": "broadcast", "routing_type": "broadcast"}),
    (70, None, None, None, {"arm": "control"}),
]


@pytest.fixture
async def served_log(harness: Harness) -> AsyncIterator[None]:
    database = open_database(harness.settings.database_url)
    await database.connect()
    try:
        for i, (favorite_s, fell_back_s, reason, broadcast_s, override) in enumerate(LOG):
            request_id, created = str(uuid.uuid4()), T0 + timedelta(hours=i)
            fell_back = created + timedelta(seconds=fell_back_s) if fell_back_s is not None else None
            accepted = None
            if favorite_s is not None:
                accepted = created + timedelta(seconds=favorite_s)
            elif broadcast_s is not None:
                accepted = (fell_back or created) + timedelta(seconds=broadcast_s)
            row = {
                "id": request_id,
                "customer_id": str(uuid.uuid4()),
                "session_type": "video",
                "plan_code": "standard",
                "status": "completed" if accepted else "pending",
                "routing_type": "priority_broadcast",
                "routing": "priority",
                "arm": "priority",
                "created_at": created,
                "accepted_at": accepted,
                "fallback_broadcast_at": fell_back,
                **override,
            }
            await database.execute(session_requests.insert().values(**row))
            if fell_back is not None:
                await database.execute(
                    request_events.insert().values(request_id=request_id, at=fell_back, kind="fell_back", detail=reason)
                )
            if accepted is not None:
                await database.execute(
                    request_events.insert().values(
                        request_id=request_id,
                        at=accepted,
                        kind="accepted",
                        mechanic_id=str(uuid.uuid4()),
                        detail=FAVORITE_ACCEPT if favorite_s is not None else None,
                    )
                )
        yield
    finally:
        await database.disconnect()


# Worked by hand. The broadcast delays seen are 60, 180 and 120 s: median 120 s, used for favorite accepts a
# shorter window cuts off. 300 s: accepts at 60 and 120 s; 400 and 800 fall back at 300 (+120); the window
# fallbacks at 300 (+60, +180); the decline at 30 (+120): mean start (60+120+420+420+360+480+150)/7 s.
# 900 s: four accepts; window fallbacks at 900 (+60, +180). 1200 s: the same four (beyond the log: a lower bound).
EXPECTED = {
    300.0: (2 / 7, (60 + 120 + 420 + 420 + 360 + 480 + 150) / 7 / 60, False),
    900.0: (4 / 7, (60 + 120 + 400 + 800 + 960 + 1080 + 150) / 7 / 60, False),
    1200.0: (4 / 7, (60 + 120 + 400 + 800 + 1260 + 1380 + 150) / 7 / 60, True),
}


def _check(windows: list[dict[str, Any]]) -> None:
    assert [w["priority_window_s"] for w in windows] == list(EXPECTED)
    for window in windows:
        acceptance, mean_minutes, beyond = EXPECTED[window["priority_window_s"]]
        assert window["requests"] == 7
        assert window["favorite_acceptance"]["value"] == pytest.approx(acceptance, abs=1e-4)
        assert window["fallback"]["value"] == pytest.approx(1 - acceptance, abs=1e-4)
        assert window["time_to_start_minutes"]["value"] == pytest.approx(mean_minutes, abs=1e-3)
        assert window["time_to_start_minutes"]["low"] < mean_minutes < window["time_to_start_minutes"]["high"]
        assert window["beyond_the_log"] is beyond
    # The Wilson 95% interval of 2 in 7, as published tables give it: 0.082 to 0.641.
    assert windows[0]["favorite_acceptance"]["low"] == pytest.approx(0.0822, abs=1e-3)
    assert windows[0]["favorite_acceptance"]["high"] == pytest.approx(0.6410, abs=1e-3)


@pytest.mark.usefixtures("served_log")
async def test_the_api_replays_the_log_against_other_windows(harness: Harness) -> None:
    response = await harness.http.get(
        "/api/admin/kpis/what-if", params={"priority_window_s": "1200,300,900"}, headers=harness.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current_priority_window_s"] == harness.settings.priority_window_s
    assert "lower bound" in body["cannot_know"]
    _check(body["windows"])

    default = await harness.http.get("/api/admin/kpis/what-if", headers=harness.admin)
    current = harness.settings.priority_window_s
    assert [w["priority_window_s"] for w in default.json()["windows"]] == [current * f for f in (0.25, 0.5, 1, 1.5, 2)]
    for bad in ("abc", "0", "-5", "nan", ",".join(["60"] * 2 + [str(i) for i in range(1, 13)])):
        refused = await harness.http.get(
            "/api/admin/kpis/what-if", params={"priority_window_s": bad}, headers=harness.admin
        )
        assert refused.status_code == 422, bad
        assert refused.json()["error"] == "validation_error"


@pytest.mark.usefixtures("served_log")
async def test_the_cli_gives_the_same_answer_from_the_database(harness: Harness) -> None:
    args = ["--priority-window", "300", "--priority-window", "900", "--priority-window", "1200"]

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "scripts.kpis", "what-if", *args, *extra]
        env = server_env(harness.settings)
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)

    done = await asyncio.to_thread(cli, "--json")
    assert done.returncode == 0, done.stderr
    _check(json.loads(done.stdout))
    table = await asyncio.to_thread(cli)
    assert "28.6% [8.2%, 64.1%]" in table.stdout and "beyond the log" in table.stdout, table.stdout
