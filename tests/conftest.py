"""Real parts only: a real Redis, a real migrated database and a real uvicorn server on a free port.

Redis: `TEST_REDIS_URL`, else a private Redis process for the session. Database: `TEST_DATABASE_URL` (a
PostgreSQL server: each test gets a database of its own, created and dropped here), else a SQLite file per test.
Each test also gets its own Redis key prefix, so tests never see each other's keys and nothing is flushed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from api.settings import Settings, load_settings
from base.database import migrate
from scripts.embedded_redis import EmbeddedCluster, EmbeddedRedis, cluster_binary
from tests.helpers import Harness, start_server

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REQUIRE_CLUSTER_TESTS = os.environ.get("REQUIRE_CLUSTER_TESTS") == "1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if TEST_REDIS_URL:
        yield TEST_REDIS_URL
        return
    with EmbeddedRedis() as redis:
        yield redis.url


def cluster_redis_binary() -> str:
    """A redis-server able to run a cluster, or the test is skipped (failed where CI requires the cluster tests)."""
    binary = cluster_binary()
    if binary is None:
        reason = "Redis Cluster tests need redis-server 7 or later on PATH (sharded pub/sub); only Redis 6.2 is here"
        if REQUIRE_CLUSTER_TESTS:
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def cluster() -> Iterator[EmbeddedCluster]:
    """A real Redis Cluster on loopback (three primaries and a replica), shared by the session's cluster tests."""
    with EmbeddedCluster(cluster_redis_binary()) as running:
        yield running


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, so that it can be killed or restarted."""
    with EmbeddedRedis() as redis:
        yield redis


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _create_pg_database(admin_url: str) -> tuple[str, str]:
    name = f"favdispatch_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin_url.rpartition("/")
    return name, f"{base}/{name}"


async def _drop_pg_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A freshly migrated database of this test's own (alembic, never create_all)."""
    if TEST_DATABASE_URL:
        name, url = await _create_pg_database(TEST_DATABASE_URL)
        await asyncio.to_thread(migrate, url)
        yield url
        await _drop_pg_database(TEST_DATABASE_URL, name)
    else:
        url = f"sqlite:///{tmp_path / 'favdispatch.db'}"
        await asyncio.to_thread(migrate, url)
        yield url


@pytest.fixture
def settings(redis_url: str, database_url: str, key_prefix: str) -> Settings:
    """Production settings with short windows: tests never sleep minutes."""
    return replace(
        load_settings(),
        redis_url=redis_url,
        database_url=database_url,
        key_prefix=key_prefix,
        heartbeat_interval_s=0.5,
        presence_ttl_s=1.5,
        last_seen_flush_s=0.2,
        priority_window_s=2.0,
        notify_wait_window_s=3.0,
        offer_ack_timeout_s=0.6,
        offer_resends=2,
        log_level="WARNING",
        graceful_shutdown_s=1.0,
        stream_keepalive_s=0.5,
    )


@pytest.fixture
async def harness(settings: Settings, redis: Redis) -> AsyncIterator[Harness]:
    async with start_server(settings) as harness:
        yield harness
