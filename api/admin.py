"""Operations: mechanics, request timelines, open requests, who is online, the KPIs and their charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import schemas
from api.auth import Role
from api.charts import line_chart
from api.context import authenticate, provider_type_of, services
from api.responses import read_json, typed
from api.schemas import MechanicBody
from api.session_requests import request_view
from base.clock import iso, utc_now
from base.errors import InvalidInput
from dispatch.rollout import Arm


async def create_mechanic(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    body = await read_json(request, MechanicBody)
    name = body.name.strip()
    if not name:
        raise InvalidInput("name is required.")
    provider_type = provider_type_of(body.provider_type)
    mechanic = await services(request).mechanics.create(name, provider_type)
    return typed(schemas.MechanicCreated(id=mechanic.id, name=mechanic.name, provider_type=mechanic.provider_type), 201)


async def delete_mechanic(request: Request) -> Response:
    """Soft-delete: sockets close with 4404, status answers 404, favorites forget them, their requests move on."""
    authenticate(request, Role.ADMIN)
    await services(request).dispatcher.forget_mechanic(request.path_params["mechanic_id"])
    return Response(status_code=204)


async def request_events(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    session_request = await svc.dispatcher.requests.get(request.path_params["request_id"])
    events = await svc.dispatcher.requests.events_of(session_request.id)
    names = await svc.mechanics.names(sorted({e.mechanic_id for e in events if e.mechanic_id}))
    return typed(
        schemas.Events(
            request_id=session_request.id,
            events=[
                schemas.Event(
                    at=iso(e.at),
                    kind=e.kind,
                    mechanic_id=e.mechanic_id,
                    mechanic_name=names.get(e.mechanic_id) if e.mechanic_id else None,
                    attempt=e.attempt,
                    detail=e.detail,
                )
                for e in events
            ],
        )
    )


def _instant(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO-8601 date or time.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def kpis(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    arm_name = request.query_params.get("arm") or None
    try:
        arm = Arm(arm_name) if arm_name else None
    except ValueError:
        raise InvalidInput("arm must be priority or control.") from None
    report = await services(request).kpis.report(_instant(request, "since"), _instant(request, "until"), arm)
    return JSONResponse(report)


async def online_mechanics(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    found = await svc.mechanics.get_many(svc.presence.online_ids())
    online = sorted((schemas.OnlineMechanic(mechanic_id=m.id, name=m.name) for m in found), key=lambda m: m.name)
    return typed(schemas.OnlineMechanics(mechanics=online))


async def open_requests(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    views = [await request_view(svc, r) for r in await svc.dispatcher.requests.open_requests()]
    return typed(schemas.SessionRequests(requests=views))


CHARTS = {
    "time_to_accept": ("Mean time to accept", "min"),
    "fallback_rate": ("Fallback rate", "%"),
}


async def kpi_chart(request: Request) -> Response:
    """A KPI over time as SVG: `metric`, `buckets` of `bucket_minutes` each, ending now."""
    authenticate(request, Role.ADMIN)
    metric = request.query_params.get("metric", "time_to_accept")
    if metric not in CHARTS:
        raise InvalidInput(f"metric must be one of: {', '.join(CHARTS)}.")
    try:
        buckets = min(48, max(2, int(request.query_params.get("buckets", "12"))))
        minutes = min(7 * 24 * 60, max(1, int(request.query_params.get("bucket_minutes", "60"))))
    except ValueError:
        raise InvalidInput("buckets and bucket_minutes must be integers.") from None
    end = utc_now()
    points: list[tuple[str, float | None]] = []
    for i in range(buckets, 0, -1):
        since, until = end - timedelta(minutes=minutes * i), end - timedelta(minutes=minutes * (i - 1))
        report = await services(request).kpis.report(since, until)
        points.append((until.strftime("%H:%M" if minutes < 24 * 60 else "%m-%d"), _chart_value(metric, report)))
    title, unit = CHARTS[metric]
    return Response(line_chart(title, unit, points), media_type="image/svg+xml")


def _chart_value(metric: str, report: dict[str, Any]) -> float | None:
    if metric == "fallback_rate":
        rate = report["fallback"]["rate"]
        return None if rate is None else rate * 100
    times = report["time_to_accept_minutes"].values()
    count = sum(t["count"] for t in times)
    return sum(t["mean"] * t["count"] for t in times) / count if count else None


routes = [
    Route("/api/admin/mechanics", create_mechanic, methods=["POST"]),
    Route("/api/admin/mechanics/{mechanic_id}", delete_mechanic, methods=["DELETE"]),
    Route("/api/admin/session-requests/{request_id}/events", request_events),
    Route("/api/admin/kpis", kpis),
    Route("/api/admin/kpis/chart.svg", kpi_chart),
    Route("/api/admin/mechanics/online", online_mechanics),
    Route("/api/admin/session-requests", open_requests),
]
