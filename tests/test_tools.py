"""The operator tools as an operator runs them: a clear line and a non-zero exit on failure, JSON on request, and
nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from api.database import open_database
from base.tables import mechanics
from scripts.embedded_redis import free_port
from tests.helpers import Harness

ROOT = Path(__file__).resolve().parent.parent


def _tool(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_an_unreachable_server_is_one_clear_line_and_a_non_zero_exit() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for args, env in (
        (("scripts/mechanic_client.py", "--token", "x"), {"BASE": closed}),
        (("scripts/mechanic_sim.py", "--url", closed, "--mechanics", "1", "--json"), {}),
        (("scripts/loadtest.py", "--url", closed, "--mechanics", "1", "--bookings", "1"), {}),
    ):
        done = _tool(*args, **env)
        assert done.returncode == 3, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("error: could not reach the server")


def test_a_bad_date_names_the_flag() -> None:
    done = _tool("scripts/kpis.py", "--since", "last tuesday")
    assert done.returncode == 2
    assert "argument --since: expected an ISO-8601 time" in done.stderr and "_instant" not in done.stderr


async def test_an_http_error_is_one_line_naming_the_call(harness: Harness) -> None:
    """A wrong JWT secret: the admin API answers 401, and the tool says so in one line."""
    args = ("scripts/mechanic_sim.py", "--url", harness.base_url, "--mechanics", "1")
    done = await asyncio.to_thread(_tool, *args, JWT_SECRET="w" * 32)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: POST" in done.stderr and "/api/admin/mechanics answered 401" in done.stderr


async def test_the_load_test_reports_json_and_removes_its_mechanics(harness: Harness) -> None:
    done = await asyncio.to_thread(
        _tool,
        "scripts/loadtest.py",
        "--url",
        harness.base_url,
        "--mechanics",
        "4",
        "--bookings",
        "6",
        "--json",
        JWT_SECRET=str(harness.settings.jwt_secret),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["bookings"] == 6 and report["time_to_accept_ms"]["n"] == 6
    database = open_database(harness.settings.database_url)
    await database.connect()
    try:
        left = await database.fetch_val(
            sa.select(sa.func.count()).select_from(mechanics).where(mechanics.c.deleted_at.is_(None))
        )
    finally:
        await database.disconnect()
    assert left == 0
