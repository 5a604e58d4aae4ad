"""Prometheus metrics: what operators watch, and who may read them."""

from __future__ import annotations

import asyncio
import time

from api.metrics import _is_loopback
from tests.helpers import Harness


async def _samples(harness: Harness) -> dict[str, float]:
    body = (await harness.http.get("/metrics", headers=harness.admin)).text
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if line[:1] != "#"}


async def test_metrics_follow_a_booking(harness: Harness) -> None:
    """Connections, online mechanics, offers, acks, fallbacks, accepts and time to accept are all exported."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    booked = await harness.book(routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer")
    await sam_app.send({"type": "decline", "request_id": booked["id"]})
    await alex_app.expect("offer", request_id=booked["id"], kind="broadcast")
    await alex_app.send({"type": "accept", "request_id": booked["id"]})
    await alex_app.expect("accepted")
    samples = await _samples(harness)
    assert samples["favdispatch_online_mechanics"] == 2
    assert samples["favdispatch_connected_sockets"] >= 2
    assert samples['favdispatch_offers_sent_total{kind="priority"}'] >= 1
    assert samples['favdispatch_offers_sent_total{kind="broadcast"}'] >= 1
    assert samples["favdispatch_offer_acks_total"] >= 2
    assert samples['favdispatch_fallbacks_total{reason="declined"}'] >= 1
    assert samples['favdispatch_accepts_total{routing_type="priority_broadcast"}'] >= 1
    assert samples['favdispatch_time_to_accept_seconds_count{routing_type="priority_broadcast"}'] >= 1
    assert any(name.startswith("favdispatch_fallback_lateness_seconds_bucket") for name in samples)


async def test_every_heartbeat_is_counted(harness: Harness) -> None:
    """Heartbeats are counted as their batch reaches Redis: each one received, within moments."""
    before = (await _samples(harness))["favdispatch_heartbeats_total"]
    app = await harness.connect(await harness.create_mechanic(), heartbeats=False)
    for _ in range(3):
        await app.send({"type": "heartbeat"})
        await app.expect("heartbeat_ack")
    deadline = time.monotonic() + 2
    while (counted := (await _samples(harness))["favdispatch_heartbeats_total"] - before) < 3:
        assert time.monotonic() < deadline, counted
        await asyncio.sleep(0.02)
    assert counted == 3


def test_only_loopback_scrapes_without_a_token() -> None:
    """Loopback addresses may scrape freely; any other address needs an admin token."""
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("127.8.9.10")
    assert not _is_loopback("10.0.0.5") and not _is_loopback(None) and not _is_loopback("testclient")
