"""Operations: mechanics, request timelines, open requests, who is online, the KPIs and their charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import schemas
from api.charts import MAX_WIDTH, MIN_WIDTH, WIDTH, line_chart
from api.context import provider_type_of, services
from api.endpoints import ADMIN, BODY_ERRORS, Endpoints
from api.responses import read_json, typed
from api.schemas import MechanicBody
from base.clock import utc_now
from base.errors import InvalidInput
from dispatch.requests import RequestSearch
from dispatch.rollout import Arm
from dispatch.what_if import CANNOT_KNOW

endpoint = Endpoints()


@endpoint(
    "post",
    "/api/admin/mechanics",
    "Create a mechanic.",
    ADMIN,
    body=schemas.MechanicBody,
    response=schemas.MechanicCreated,
    status=201,
    errors=(401, 403, *BODY_ERRORS),
)
async def create_mechanic(request: Request) -> Response:
    body = await read_json(request, MechanicBody)
    name = body.name.strip()
    if not name:
        raise InvalidInput("name is required.")
    provider_type = provider_type_of(body.provider_type)
    mechanic = await services(request).mechanics.create(name, provider_type)
    return typed(schemas.MechanicCreated(id=mechanic.id, name=mechanic.name, provider_type=mechanic.provider_type), 201)


MECHANICS_FOUND = 20


@endpoint(
    "get",
    "/api/admin/mechanics",
    f"Mechanics whose name contains `name` (in any case), by name, at most {MECHANICS_FOUND}: how operations picks "
    "one.",
    ADMIN,
    response=schemas.MechanicsFound,
    errors=(401, 403, 422),
    query={"name": {"type": "string", "maxLength": 200}},
)
async def find_mechanics(request: Request) -> Response:
    found = await services(request).mechanics.named(_text(request, "name", 200) or "", MECHANICS_FOUND)
    return typed(
        schemas.MechanicsFound(
            mechanics=[schemas.MechanicFound(m.id, m.name, m.provider_type, m.workshop_id) for m in found]
        )
    )


@endpoint(
    "delete",
    "/api/admin/mechanics/{mechanic_id}",
    "Delete a mechanic: sockets close 4404, favorites forget them, their requests move on.",
    ADMIN,
    status=204,
    errors=(401, 403, 404),
)
async def delete_mechanic(request: Request) -> Response:
    """Soft-delete: sockets close with 4404, status answers 404, favorites forget them, their requests move on."""
    await services(request).dispatcher.forget_mechanic(request.path_params["mechanic_id"])
    return Response(status_code=204)


@endpoint(
    "get",
    "/api/admin/session-requests/{request_id}/events",
    "A request's event log, oldest first.",
    ADMIN,
    response=schemas.Events,
    errors=(401, 403, 404),
)
async def request_events(request: Request) -> Response:
    return typed(await services(request).views.timeline(request.path_params["request_id"]))


_LEAP_SECOND = re.compile(r"(T\d{2}:\d{2}):60")


def _instant(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    # Every RFC 3339 date-time that /openapi.json admits: `t` and `z` in either case, a leap second (read as the
    # second before it; fromisoformat refuses :60), and a plain date.
    rfc3339 = _LEAP_SECOND.sub(r"\1:59", value.upper()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(rfc3339)
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO-8601 date or time.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@endpoint(
    "get",
    "/api/admin/kpis",
    "The favorites KPIs, split by A/B arm (definitions: docs/kpis.md).",
    ADMIN,
    response=schemas.KpiReport,
    errors=(401, 403, 422),
    query={
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "arm": {"enum": ["priority", "control"]},
    },
)
async def kpis(request: Request) -> Response:
    arm_name = request.query_params.get("arm") or None
    try:
        arm = Arm(arm_name) if arm_name else None
    except ValueError:
        raise InvalidInput("arm must be priority or control.") from None
    report = await services(request).kpis.report(_instant(request, "since"), _instant(request, "until"), arm)
    return JSONResponse(report)


MAX_WHAT_IF_WINDOWS = 12


@endpoint(
    "get",
    "/api/admin/kpis/what-if",
    "What other priority windows would have done to the requests served: favorite acceptance, fallback rate and "
    "time to session start, each with a 95% interval (the method and its limits: docs/kpis.md).",
    ADMIN,
    response=schemas.WhatIf,
    errors=(401, 403, 422),
    query={
        "priority_window_s": {
            "type": "string",
            "description": "Windows in seconds, comma-separated (default: the current one and a few around it).",
        },
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
    },
)
async def what_if(request: Request) -> Response:
    svc = services(request)
    current = svc.settings.priority_window_s
    windows = _windows(request.query_params.get("priority_window_s"), current)
    found = await svc.kpis.what_if(windows, _instant(request, "since"), _instant(request, "until"))
    return typed(
        schemas.WhatIf(
            current_priority_window_s=current,
            windows=[msgspec.convert(estimate, schemas.WindowEstimate, from_attributes=True) for estimate in found],
            cannot_know=CANNOT_KNOW,
        )
    )


def _windows(text: str | None, current: float) -> list[float]:
    """The windows asked for, or by default the current one with a quarter, a half, one and a half and twice it."""
    if not text:
        return sorted({current * factor for factor in (0.25, 0.5, 1, 1.5, 2)})
    try:
        windows = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InvalidInput("priority_window_s must be numbers of seconds, comma-separated.") from None
    if not windows or len(windows) > MAX_WHAT_IF_WINDOWS or not all(0 < w <= 86_400 for w in windows):
        raise InvalidInput(f"priority_window_s: 1 to {MAX_WHAT_IF_WINDOWS} windows, each of 1 s to a day.")
    return windows


@endpoint(
    "get",
    "/api/admin/mechanics/online",
    "Mechanics online now, across every server.",
    ADMIN,
    response=schemas.OnlineMechanics,
    errors=(401, 403),
)
async def online_mechanics(request: Request) -> Response:
    svc = services(request)
    found = await svc.mechanics.get_many(svc.presence.online_ids())
    online = sorted((schemas.OnlineMechanic(mechanic_id=m.id, name=m.name) for m in found), key=lambda m: m.name)
    return typed(schemas.OnlineMechanics(mechanics=online))


@endpoint(
    "get",
    "/api/admin/session-requests",
    "Requests newest first: the open ones (pending and accepted), or with `status=any` every request matching the "
    "search (at most 100); a request by id (or its first characters), customer or mechanic (id or part of a name), "
    "created within `since`/`until`.",
    ADMIN,
    response=schemas.SessionRequests,
    errors=(401, 403, 422),
    query={
        "status": {"enum": ["open", "any"]},
        "id": {"type": "string", "maxLength": 36},
        "customer": {"type": "string", "maxLength": 200},
        "mechanic": {"type": "string", "maxLength": 200},
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
    },
)
async def search_requests(request: Request) -> Response:
    status = request.query_params.get("status", "open")
    if status not in ("open", "any"):
        raise InvalidInput("status must be open or any.")
    texts = {name: _text(request, name, limit) for name, limit in (("id", 36), ("customer", 200), ("mechanic", 200))}
    wanted = RequestSearch(
        request_id=texts["id"],
        customer=texts["customer"],
        mechanic=texts["mechanic"],
        since=_instant(request, "since"),
        until=_instant(request, "until"),
        open_only=status == "open",
    )
    return typed(await services(request).views.search(wanted))


def _text(request: Request, name: str, limit: int) -> str | None:
    """A search term: trimmed, None when blank, 422 beyond the length the schema declares."""
    value = request.query_params.get(name, "").strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} must be at most {limit} characters.")
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise InvalidInput(f"{name} must not contain a NUL character.")
    return value or None


MAX_BUCKET_MINUTES = 7 * 24 * 60
CHARTS = {
    "time_to_accept": ("Mean time to accept", "min"),
    "fallback_rate": ("Fallback rate", "%"),
}


@endpoint(
    "get",
    "/api/admin/kpis/chart.svg",
    "A KPI over time as an SVG line chart: metric time_to_accept or fallback_rate.",
    ADMIN,
    media_type="image/svg+xml",
    errors=(401, 403, 422),
    query={
        "metric": {"enum": ["time_to_accept", "fallback_rate"]},
        "buckets": {"type": "integer", "minimum": 2, "maximum": 48},
        "bucket_minutes": {"type": "integer", "minimum": 1, "maximum": MAX_BUCKET_MINUTES},
        "width": {"type": "integer", "minimum": MIN_WIDTH, "maximum": MAX_WIDTH},
    },
)
async def kpi_chart(request: Request) -> Response:
    """A KPI over time as SVG: `metric`, `buckets` of `bucket_minutes` each, ending now."""
    metric = request.query_params.get("metric", "time_to_accept")
    if metric not in CHARTS:
        raise InvalidInput(f"metric must be one of: {', '.join(CHARTS)}.")
    buckets = _integer(request, "buckets", 12, 2, 48)
    minutes = _integer(request, "bucket_minutes", 60, 1, MAX_BUCKET_MINUTES)
    series = await services(request).kpis.series(utc_now(), timedelta(minutes=minutes), buckets)
    label = "%H:%M" if minutes < 24 * 60 else "%m-%d"
    width = _integer(request, "width", WIDTH, MIN_WIDTH, MAX_WIDTH)
    points = [(until.strftime(label), _chart_value(metric, report)) for until, report in series]
    title, unit = CHARTS[metric]
    if unit == "min" and all(v is None or v < 2 for _, v in points):  # seconds read better under two minutes
        points, unit = [(at, None if v is None else v * 60) for at, v in points], "s"
    return Response(line_chart(title, unit, points, width), media_type="image/svg+xml")


def _integer(request: Request, name: str, default: int, lowest: int, highest: int) -> int:
    """A query parameter as the schema declares it: an integer within its bounds, else 422 (never clamped)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer.") from None
    if not lowest <= value <= highest:
        raise InvalidInput(f"{name} must be from {lowest} to {highest}.")
    return value


def _chart_value(metric: str, report: dict[str, Any]) -> float | None:
    if metric == "fallback_rate":
        rate = report["fallback"]["rate"]
        return None if rate is None else rate * 100
    times = report["time_to_accept_minutes"].values()
    count = sum(t["count"] for t in times)
    return sum(t["mean"] * t["count"] for t in times) / count if count else None
