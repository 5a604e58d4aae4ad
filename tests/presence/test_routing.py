"""Deliveries cost only the processes they reach: an envelope for named mechanics is published to the processes
that hold their devices, and only broadcasts go to every process. Watched on Redis itself, with three processes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from presence.keys import PresenceKeys
from presence.tracker import ROUTE_TTLS
from tests.helpers import Harness, ServerProcess, spawn_server, stop_server


@pytest.fixture
async def processes(harness: Harness) -> AsyncIterator[list[ServerProcess]]:
    spawned = await asyncio.gather(spawn_server(harness.settings), spawn_server(harness.settings))
    yield list(spawned)
    for process in spawned:
        stop_server(process)


class Deliveries:
    """Every message on the delivery channels, as (channel suffix, envelope)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._pubsub = redis.pubsub()
        self._channel = f"{prefix}:deliver"
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._pubsub.psubscribe(self._channel, f"{self._channel}:*")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] == "pmessage":
                suffix = message["channel"][len(self._channel) :].lstrip(":") or "everyone"
                self.seen.append((suffix, json.loads(message["data"])))

    def about(self, request_id: str) -> list[tuple[str, str]]:
        """(where, frame type) of each envelope whose frame names this request."""
        found = []
        for where, envelope in self.seen:
            frame = envelope.get("frame") or {}
            if isinstance(frame, dict) and frame.get("request_id") == request_id:
                found.append((where, frame["type"]))
        return found

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()


async def _process_of(redis: Redis, prefix: str, mechanic_id: str) -> str:
    members = await redis.zrange(PresenceKeys(prefix).devices(mechanic_id), 0, -1)
    assert len(members) == 1, members
    return str(members[0]).split(".", 1)[0]


async def test_an_offer_goes_only_to_the_process_holding_the_favorite(
    harness: Harness, processes: list[ServerProcess], redis: Redis
) -> None:
    prefix = harness.settings.key_prefix
    watch = Deliveries(redis, prefix)
    await watch.start()
    try:
        sam = await harness.create_mechanic("Sam")
        others = [await harness.create_mechanic(f"M{i}") for i in range(3)]
        sam_app = await harness.connect(sam, ws_url=processes[1].ws_url)
        apps = [
            await harness.connect(m, ws_url=url)
            for m, url in zip(others, (harness.ws_url, *[p.ws_url for p in processes]), strict=False)
        ]
        sam_process = await _process_of(redis, prefix, sam)
        booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
        await sam_app.expect("offer", request_id=booked["id"], kind="priority")
        await sam_app.send({"type": "decline", "request_id": booked["id"]})
        for app in apps:
            await app.expect("offer", request_id=booked["id"], kind="broadcast")
        await sam_app.expect("declined", request_id=booked["id"])
        await asyncio.sleep(0.3)
        assert watch.about(booked["id"]) == [
            (sam_process, "offer"),  # the priority offer: Sam's process alone
            ("everyone", "offer"),  # the broadcast after the decline
            (sam_process, "declined"),  # the answer to Sam's own devices
        ]
    finally:
        await watch.stop()


async def test_an_offline_mechanic_costs_no_delivery_and_a_dead_process_keeps_no_route(
    harness: Harness, processes: list[ServerProcess], redis: Redis
) -> None:
    prefix = harness.settings.key_prefix
    sam = await harness.create_mechanic("Sam")
    await harness.connect(sam, ws_url=processes[0].ws_url)
    dead = await _process_of(redis, prefix, sam)
    processes[0].process.send_signal(signal.SIGKILL)
    processes[0].process.wait()
    await asyncio.sleep(ROUTE_TTLS * harness.settings.presence_ttl_s + 0.5)  # the dead process's route lapses
    watch = Deliveries(redis, prefix)
    await watch.start()
    try:
        assert (await harness.status(sam))["is_online"] is False
        booked = await harness.book(routing="notify_and_wait", preferred_mechanic_id=sam)
        response = await harness.http.post(f"/api/session-requests/{booked['id']}/cancel", headers=harness.customer)
        assert response.status_code == 200
        await asyncio.sleep(0.3)
        assert all(where != dead for where, _ in watch.seen)
        assert watch.about(booked["id"]) == [("everyone", "offer_revoked")]  # the cancel, to any holder
    finally:
        await watch.stop()


async def test_a_socket_whose_presence_lapsed_still_gets_its_frames(harness: Harness, redis: Redis) -> None:
    """Heartbeats that run late let presence lapse while the socket is open: routes outlive presence, so the
    mechanic's own answer still reaches them (found under load: `accepted` frames went missing)."""
    prefix = harness.settings.key_prefix
    sam = await harness.create_mechanic("Sam")
    sam_app = await harness.connect(sam)
    booked = await harness.book(routing="broadcast")
    await sam_app.expect("offer", request_id=booked["id"])
    keys = PresenceKeys(prefix)
    await redis.delete(keys.online(sam), keys.devices(sam))  # what a lapse leaves
    await sam_app.send({"type": "accept", "request_id": booked["id"]})
    await sam_app.expect("accepted", request_id=booked["id"])
