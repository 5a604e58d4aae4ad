"""The KPI report on a known data set, built through the API and the sockets (never inserted by hand)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from api.auth import Role
from api.charts import line_chart
from api.settings import Settings
from base.clock import utc_now
from base.database import open_database
from dispatch.kpis import Kpis
from dispatch.rollout import Arm, arm_for
from tests.helpers import Harness, MechanicApp, start_server


async def _accept(app: MechanicApp, request_id: str) -> None:
    await app.expect("offer", request_id=request_id)
    await app.send({"type": "accept", "request_id": request_id})
    await app.expect("accepted", request_id=request_id)


async def _complete(harness: Harness, mechanic_id: str, request_id: str) -> None:
    mechanic = harness.auth(harness.token(Role.MECHANIC, mechanic_id))
    response = await harness.http.post(f"/api/session-requests/{request_id}/complete", headers=mechanic)
    assert response.status_code == 200, response.text


async def _book(harness: Harness, customer: dict[str, str], **body: Any) -> str:
    body = {"session_type": "video", "plan_code": "quick", **body}
    response = await harness.http.post("/api/session-requests", json=body, headers=customer)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_kpis_on_a_known_data_set(harness: Harness) -> None:
    """Acceptance, fallback (with reasons), rebook and time to accept match a scripted week of bookings."""
    sam = await harness.create_mechanic("Sam")
    alex = await harness.create_mechanic("Alex")
    sam_app = await harness.connect(sam)
    alex_app = await harness.connect(alex)
    first = harness.auth(harness.token(Role.CUSTOMER, name="First"))
    second = harness.auth(harness.token(Role.CUSTOMER, name="Second"))

    # 1. The favorite accepts, and the session ends (one open request per customer and favorite).
    r1 = await _book(harness, first, routing="priority", preferred_mechanic_id=sam)
    await _accept(sam_app, r1)
    await _complete(harness, sam, r1)
    # 2. The favorite declines; Alex takes the broadcast.
    r2 = await _book(harness, first, routing="priority", preferred_mechanic_id=sam)
    await sam_app.expect("offer", request_id=r2)
    await sam_app.send({"type": "decline", "request_id": r2})
    await _accept(alex_app, r2)
    await _complete(harness, alex, r2)
    # 3. The favorite lets the window pass; Alex takes the broadcast.
    r3 = await _book(harness, second, routing="priority", preferred_mechanic_id=sam)
    await alex_app.expect("offer", request_id=r3, kind="broadcast", timeout=5)
    await alex_app.send({"type": "accept", "request_id": r3})
    await alex_app.expect("accepted", request_id=r3)
    # 4. A plain broadcast, Alex again.
    r4 = await _book(harness, second, routing="broadcast")
    await _accept(alex_app, r4)
    # 5. The favorite accepts, then gives it back; Alex takes it.
    r5 = await _book(harness, first, routing="priority", preferred_mechanic_id=sam)
    await _accept(sam_app, r5)
    await sam_app.send({"type": "cancel", "request_id": r5, "reason": "flat tyre"})
    await alex_app.expect("offer", request_id=r5, kind="broadcast")
    await alex_app.send({"type": "accept", "request_id": r5})
    await alex_app.expect("accepted", request_id=r5)

    report = (await harness.http.get("/api/admin/kpis", headers=harness.admin)).json()
    assert report["requests"] == 5
    assert report["favorite_acceptance"] == {
        "rate": 0.5,
        "accepted_by_favorite": 2,
        "with_favorite": 4,
        "target": 0.7,
        "by_provider_type": {"independent": {"rate": 0.5, "accepted_by_favorite": 2, "with_favorite": 4}},
    }
    assert report["fallback"] == {
        "rate": 0.75,
        "fell_back": 3,
        "priority_requests": 4,
        "target": 0.3,
        "reasons": {"declined": 1, "mechanic_cancelled": 1, "window": 1},
    }
    assert report["rebook"] == {"rate": 1.0, "rebooked_customers": 2, "customers_with_two_or_more": 2, "target": 0.6}
    times = report["time_to_accept_minutes"]
    assert times["priority_broadcast"]["count"] == 4 and times["broadcast"]["count"] == 1
    window_minutes = harness.settings.priority_window_s / 60
    assert times["priority_broadcast"]["p90"] >= window_minutes * 0.5  # r3 waited out the window
    assert times["priority_broadcast"]["p50"] <= times["priority_broadcast"]["p90"]
    assert report["arms"]["priority"]["requests"] == 5 and report["arms"]["control"]["requests"] == 0

    only_since_now = await harness.http.get(
        "/api/admin/kpis", params={"since": "2999-01-01T00:00:00Z"}, headers=harness.admin
    )
    assert only_since_now.json()["requests"] == 0
    await _charted_buckets_match_their_reports(harness.settings)


async def _charted_buckets_match_their_reports(settings: Settings) -> None:
    """The chart's series, read once for its whole span, gives each bucket what a report of that bucket gives."""
    database = open_database(settings.database_url)
    await database.connect()
    try:
        kpis = Kpis(database)
        series = await kpis.series(utc_now(), timedelta(seconds=3), 10)
        assert sum(metrics["requests"] for _, metrics in series) == 5
        for until, metrics in series:
            report = await kpis.report(until - timedelta(seconds=3), until)
            assert metrics == {k: v for k, v in report.items() if k not in ("range", "arms", "ab_test")}
    finally:
        await database.disconnect()


async def test_kpi_parameters_are_validated(harness: Harness) -> None:
    """Bad dates or arms are a 422; customers cannot read KPIs."""
    for params in ({"since": "yesterday"}, {"arm": "treatment"}):
        response = await harness.http.get("/api/admin/kpis", params=params, headers=harness.admin)
        assert response.status_code == 422
    assert (await harness.http.get("/api/admin/kpis", headers=harness.customer)).status_code == 403
    for valid in ("2026-01-01t00:00:00z", "2026-06-30T23:59:60Z", "2026-01-01T00:00:00.1234567+01:00", "2026-01-01"):
        response = await harness.http.get("/api/admin/kpis", params={"until": valid}, headers=harness.admin)
        assert response.status_code == 200, (valid, response.text)  # every date-time the schema admits
    chart = "/api/admin/kpis/chart.svg"
    for params in ({"buckets": "49"}, {"buckets": "1"}, {"bucket_minutes": "0"}, {"bucket_minutes": "x"}):
        response = await harness.http.get(chart, params=params, headers=harness.admin)
        assert response.status_code == 422, params  # as /openapi.json bounds them: refused, never clamped
    assert (await harness.http.get(chart, params={"buckets": "48"}, headers=harness.admin)).status_code == 200


async def _chart(harness: Harness, **params: str) -> str:
    response = await harness.http.get("/api/admin/kpis/chart.svg", params=params, headers=harness.admin)
    assert response.status_code == 200, response.text
    return response.text


async def test_a_chart_is_drawn_at_the_width_asked_and_says_when_it_has_too_little_data(harness: Harness) -> None:
    """Drawn for the width it is shown at (text keeps its 12 px), one point is no line, seconds under 2 minutes."""
    empty = await _chart(harness, metric="time_to_accept", width="390")
    assert 'viewBox="0 0 390 220"' in empty and "Not enough data yet" in empty and "<circle" not in empty
    assert 'font-size="12"' in empty and 'font-size="10"' not in empty
    sam = await harness.create_mechanic("Sam")
    sam_app = await harness.connect(sam)
    await _accept(sam_app, await _book(harness, harness.customer, routing="broadcast"))
    one_point = await _chart(harness, metric="time_to_accept", buckets="2", bucket_minutes="60")
    assert "Not enough data yet" in one_point and "<circle" not in one_point
    assert "Mean time to accept (s)" in one_point  # an accept within seconds reads in seconds
    two_points = line_chart("Fallback rate", "%", [("10:00", 20.0), ("11:00", None), ("12:00", 40.0)], 600)
    assert "Not enough data yet" not in two_points and two_points.count("<circle") == 2
    for width in ("279", "1601", "wide"):
        response = await harness.http.get("/api/admin/kpis/chart.svg", params={"width": width}, headers=harness.admin)
        assert response.status_code == 422, width


@pytest.fixture
async def half_rollout(settings: Settings, redis: Any) -> AsyncIterator[Harness]:
    async with start_server(replace(settings, rollout_percent=50)) as harness:
        yield harness


def _customer_in(arm: Arm, start: int) -> str:
    i = start
    while True:
        candidate = f"00000000-0000-4000-8000-{i:012d}"
        if arm_for(candidate, 50) is arm:
            return candidate
        i += 1


async def test_ab_split_compares_the_arms(half_rollout: Harness) -> None:
    """With a 50% rollout the report splits by arm and compares them with a confidence interval."""
    harness = half_rollout
    sam = await harness.create_mechanic("Sam")
    sam_app = await harness.connect(sam)
    for arm, start in ((Arm.PRIORITY, 0), (Arm.CONTROL, 0)):
        for k in range(2):
            customer = harness.auth(harness.token(Role.CUSTOMER, _customer_in(arm, start + k * 1000)))
            request_id = await _book(harness, customer, routing="priority", preferred_mechanic_id=sam)
            await _accept(sam_app, request_id)
    report = (await harness.http.get("/api/admin/kpis", headers=harness.admin)).json()
    assert report["arms"]["priority"]["requests"] == 2 and report["arms"]["control"]["requests"] == 2
    assert report["arms"]["priority"]["fallback"]["priority_requests"] == 2
    assert report["arms"]["control"]["fallback"]["priority_requests"] == 0
    acceptance = report["ab_test"]["favorite_acceptance"]
    assert acceptance["priority_rate"] == 1.0 and acceptance["control_rate"] == 1.0
    assert acceptance["difference"] == 0.0 and acceptance["significant"] is False
    times = report["ab_test"]["time_to_accept_minutes"]
    assert times["priority_n"] == 2 and times["control_n"] == 2
    assert times["difference"] == pytest.approx(times["priority_mean"] - times["control_mean"], abs=0.011)
    only_control = await harness.http.get("/api/admin/kpis", params={"arm": "control"}, headers=harness.admin)
    assert only_control.json()["requests"] == 2 and "arms" not in only_control.json()
