"""The operator tools as an operator runs them: a clear line and a non-zero exit on failure, JSON on request, and
nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.settings import Settings
from api.web_push import new_vapid_private_key
from base.database import migrate, open_database
from base.tables import mechanics
from scripts.embedded_redis import free_port
from scripts.processes import PortTaken, spawn_python, wait_ready
from tests.helpers import Harness, server_env, start_server

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


async def test_the_mechanic_client_says_what_a_refusal_means_and_fails(harness: Harness) -> None:
    """A bad token: the socket closes with 4401, and the client says what that means and exits non-zero."""
    done = await asyncio.to_thread(_tool, "scripts/mechanic_client.py", "--token", "not-a-jwt", BASE=harness.base_url)
    assert done.returncode == 1, done.stderr
    assert "4401" in done.stderr and "token" in done.stderr and "Traceback" not in done.stderr


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


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"JWT_SECRET": " " * 32}, "JWT_SECRET"),
        ({"JWT_SECRET": "a" * 40}, "JWT_SECRET"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"VAPID_PRIVATE_KEY": "not-a-key"}, "VAPID_PRIVATE_KEY"),
    ],
    ids=["blank-secret", "repeated-secret", "no-database-url", "malformed-vapid-key"],
)
def test_production_refuses_traps_in_one_line(env: dict[str, str], named: str) -> None:
    """A careless deployment stops at once, naming the setting (and how to make a good value), never a traceback."""
    good = {
        "JWT_SECRET": secrets.token_urlsafe(48),
        "DATABASE_URL": "sqlite:///unused.db",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "WEB_PUSH": "on",
        "VAPID_PRIVATE_KEY": new_vapid_private_key(),
    }
    done = _tool("-m", "scripts.serve", "--production", "--port", str(free_port()), **{**good, **env})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in done.stderr, done.stderr


async def test_readyz_says_not_ready_until_the_schema_is_migrated(
    settings: Settings, redis: object, tmp_path: Path
) -> None:
    unmigrated = replace(settings, database_url=f"sqlite:///{tmp_path}/fresh.db")
    async with start_server(unmigrated) as harness:
        ready = await harness.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"redis": True, "database": True, "schema": False}
        await asyncio.to_thread(migrate, unmigrated.database_url)
        assert (await harness.http.get("/readyz")).status_code == 200


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
async def test_make_run_leaves_no_redis_behind_whatever_stops_it(tmp_path: Path, sig: signal.Signals) -> None:
    """What process managers, IDE stop buttons and `docker stop` send: the server and its private Redis end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/run.db"
    make = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        # As a terminal or a process manager starts it: every signal at its default (this runner may ignore some).
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        (serve,) = _children(make.pid)
        redis_servers = _children(serve)
        assert len(redis_servers) == 1
        if sig == signal.SIGHUP:  # a terminal's hang-up reaches its whole foreground group
            os.killpg(make.pid, sig)
        else:  # a process manager's or IDE's stop, or a crash: make alone
            make.send_signal(sig)
        for _ in range(200):
            if not _alive(serve) and not _alive(redis_servers[0]):
                break
            await asyncio.sleep(0.1)
        assert not _alive(redis_servers[0]), f"its Redis outlived make run stopped with {sig.name}"
        assert not _alive(serve)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make.pid, signal.SIGKILL)
        make.wait()


async def test_a_server_whose_port_another_took_is_told_apart_from_a_ready_one(harness: Harness) -> None:
    """The suite's servers start on a free port that another process may take first: the one answering `/readyz`
    on it must not be mistaken for the one just started (PortTaken, so that the caller retries elsewhere)."""
    taken = int(harness.base_url.rsplit(":", 1)[1])  # a ready favdispatch listens there already
    server = spawn_python(
        ["-m", "scripts.serve", "--production", "--port", "{port}"], server_env(harness.settings), port=taken
    )
    try:
        with pytest.raises(PortTaken):
            await wait_ready(server)
    finally:
        server.stop()
