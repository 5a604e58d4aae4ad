"""The HTTP API: thin handlers that authenticate, validate, call the domain and shape the JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import Principal, Role
from api.charts import line_chart
from api.context import authenticate, new_request_from, services
from api.openapi import OPENAPI
from api.responses import read_json
from api.runtime import Services
from api.schemas import BookingBody, FavoriteBody, MechanicBody
from base.clock import iso, utc_now
from base.errors import InvalidInput, MechanicNotFound, PaymentRequired, RequestNotFound
from base.ids import canonical_id
from dispatch.mechanics import Mechanic, ProviderType
from dispatch.models import SessionRequest, Status
from dispatch.rollout import Arm, arm_for
from dispatch.wording import customer_message
from presence.replica import LiveStatus
from presence.tracker import last_seen_of

MAX_STATUS_IDS = 100


def _provider_type(value: str | None) -> ProviderType:
    try:
        return ProviderType(value or ProviderType.INDEPENDENT.value)
    except ValueError:
        raise InvalidInput("provider_type must be independent or workshop.") from None


def _statuses(svc: Services, found: list[Mechanic], principal: Principal) -> dict[str, dict[str, Any]]:
    """From memory: the presence replica, and the database's last_seen (cached with the mechanic) for those
    Redis has not seen since it lost its keys."""
    live = svc.presence.statuses([m.id for m in found])
    priority_booking = _priority_booking(svc, principal)
    return {m.id: _status_json(m, live[m.id], m.last_seen_at, priority_booking) for m in found}


def _status_json(
    mechanic: Mechanic, live: LiveStatus, persisted: datetime | None, priority_booking: bool | None
) -> dict[str, Any]:
    last_seen = last_seen_of(live, persisted)
    return {
        "mechanic_id": mechanic.id,
        "name": mechanic.name,
        "is_online": live.is_online,
        "last_seen": iso(last_seen),
        "last_seen_seconds": max(0, int((utc_now() - last_seen).total_seconds())) if last_seen else None,
        "priority_booking": priority_booking,
    }


def _priority_booking(svc: Services, principal: Principal) -> bool | None:
    """Whether this customer's bookings may go to a favorite first (the A/B rollout); None for other roles."""
    if principal.role is not Role.CUSTOMER:
        return None
    return arm_for(principal.sub, svc.settings.rollout_percent) is Arm.PRIORITY


# Health


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    checks = {"redis": True, "database": True}
    try:
        await svc.redis.ping()
    except (RedisError, OSError):
        checks["redis"] = False
    try:
        await svc.database.fetch_val("SELECT 1")
    except Exception:  # noqa: BLE001  (each driver raises its own errors; any of them means not ready)
        checks["database"] = False
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


# Mechanics' status


async def mechanic_status(request: Request) -> Response:
    principal = authenticate(request)
    svc = services(request)
    mechanic = await svc.mechanics.get(request.path_params["mechanic_id"])
    return JSONResponse(_statuses(svc, [mechanic], principal)[mechanic.id])


async def mechanics_status(request: Request) -> Response:
    principal = authenticate(request)
    svc = services(request)
    ids = [i.strip() for i in request.query_params.get("ids", "").split(",") if i.strip()]
    if not ids:
        raise InvalidInput("ids is required: a comma-separated list of mechanic ids.")
    if len(ids) > MAX_STATUS_IDS:
        raise InvalidInput(f"At most {MAX_STATUS_IDS} ids per request.")
    statuses = _statuses(svc, await svc.mechanics.get_many(ids), principal)
    entries = []
    for requested in ids:
        canonical = canonical_id(requested)
        status = statuses.get(canonical) if canonical else None
        if status is None:
            entries.append(
                {"mechanic_id": requested, "error": MechanicNotFound.code, "message": MechanicNotFound.default_message}
            )
        else:
            entries.append(status)
    return JSONResponse({"mechanics": entries})


# Favorites


async def list_favorites(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)
    favorites = await svc.favorites.list(principal.sub)
    live = svc.presence.statuses([f.provider_id for f in favorites])
    body = []
    for favorite in favorites:
        last_seen = last_seen_of(live[favorite.provider_id], favorite.last_seen_at)
        body.append(
            {
                "provider_id": favorite.provider_id,
                "provider_type": favorite.provider_type,
                "name": favorite.name,
                "booking_count": favorite.booking_count,
                "created_at": iso(favorite.created_at),
                "is_online": live[favorite.provider_id].is_online,
                "last_seen": iso(last_seen),
                "last_seen_seconds": max(0, int((utc_now() - last_seen).total_seconds())) if last_seen else None,
            }
        )
    return JSONResponse({"favorites": body})


async def add_favorite(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    body = await read_json(request, FavoriteBody)
    provider_type = _provider_type(body.provider_type)
    svc = services(request)
    mechanic, is_new = await svc.favorites.add(principal.sub, body.provider_id, provider_type)
    payload = {"provider_id": mechanic.id, "provider_type": provider_type.value, "name": mechanic.name}
    return JSONResponse(payload, status_code=201 if is_new else 200)


async def remove_favorite(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    await services(request).favorites.remove(principal.sub, request.path_params["provider_id"])
    return Response(status_code=204)


# Admin


async def create_mechanic(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    body = await read_json(request, MechanicBody)
    name = body.name.strip()
    if not name:
        raise InvalidInput("name is required.")
    provider_type = _provider_type(body.provider_type)
    mechanic = await services(request).mechanics.create(name, provider_type)
    return JSONResponse({"id": mechanic.id, "name": mechanic.name, "provider_type": mechanic.provider_type}, 201)


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
    return JSONResponse(
        {
            "request_id": session_request.id,
            "events": [
                {
                    "at": iso(e.at),
                    "kind": e.kind,
                    "mechanic_id": e.mechanic_id,
                    "attempt": e.attempt,
                    "detail": e.detail,
                }
                for e in events
            ],
        }
    )


# Session requests


async def _request_json(svc: Services, request: SessionRequest) -> dict[str, Any]:
    names = await svc.dispatcher.requests.names_of(
        [i for i in (request.preferred_mechanic_id, request.mechanic_id) if i]
    )
    return {
        "id": request.id,
        "status": request.status.value,
        "phase": request.phase.value if request.phase else None,
        "routing": request.routing.value,
        "routing_type": request.routing_type,
        "session_type": request.session_type,
        "plan_code": request.plan_code,
        "preferred_mechanic_id": request.preferred_mechanic_id,
        "mechanic_id": request.mechanic_id,
        "mechanic_name": names.get(request.mechanic_id) if request.mechanic_id else None,
        "attempt": request.attempt,
        "priority_window_minutes": request.priority_window_minutes,
        "priority_deadline": iso(request.priority_deadline),
        "priority_notified_at": iso(request.priority_notified_at),
        "fallback_broadcast_at": iso(request.fallback_broadcast_at),
        "created_at": iso(request.created_at),
        "accepted_at": iso(request.accepted_at),
        "arm": request.arm,
        "message": customer_message(request, names),
        "favorite_prompt": await _favorite_prompt(svc, request, names),
    }


async def _favorite_prompt(svc: Services, request: SessionRequest, names: dict[str, str]) -> dict[str, str] | None:
    """After a completed session: offer to save the mechanic, unless they already are a favorite or it was dismissed."""
    if request.status is not Status.COMPLETED or request.mechanic_id is None:
        return None
    if request.favorite_prompt_dismissed_at is not None:
        return None
    if await svc.favorites.is_favorite(request.customer_id, request.mechanic_id):
        return None
    return {"mechanic_id": request.mechanic_id, "name": names.get(request.mechanic_id, "")}


async def create_request(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    body = await read_json(request, BookingBody)
    svc = services(request)
    if svc.settings.payments_enabled:
        raise PaymentRequired()
    created = await svc.dispatcher.book(new_request_from(principal, body))
    return JSONResponse(await _request_json(svc, created), status_code=201)


async def get_request(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER, Role.ADMIN)
    svc = services(request)
    found = await svc.dispatcher.requests.get(request.path_params["request_id"])
    if principal.role is not Role.ADMIN and found.customer_id != principal.sub:
        raise RequestNotFound()
    return JSONResponse(await _request_json(svc, found))


async def cancel_request(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)
    cancelled = await svc.dispatcher.cancel(principal.sub, request.path_params["request_id"])
    return JSONResponse(await _request_json(svc, cancelled))


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
    return JSONResponse(
        {"mechanics": sorted(({"mechanic_id": m.id, "name": m.name} for m in found), key=lambda m: m["name"])}
    )


async def open_requests(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    return JSONResponse(
        {"requests": [await _request_json(svc, r) for r in await svc.dispatcher.requests.open_requests()]}
    )


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


async def complete_request(request: Request) -> Response:
    principal = authenticate(request, Role.MECHANIC)
    svc = services(request)
    completed = await svc.dispatcher.complete(principal.sub, request.path_params["request_id"])
    return JSONResponse(await _request_json(svc, completed))


async def dismiss_favorite_prompt(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    await services(request).dispatcher.dismiss_favorite_prompt(principal.sub, request.path_params["request_id"])
    return Response(status_code=204)


routes = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/openapi.json", openapi, include_in_schema=False),
    Route("/api/mechanics/status", mechanics_status),
    Route("/api/mechanics/{mechanic_id}/status", mechanic_status),
    Route("/api/customer/favorites", list_favorites, methods=["GET"]),
    Route("/api/customer/favorites", add_favorite, methods=["POST"]),
    Route("/api/customer/favorites/{provider_id}", remove_favorite, methods=["DELETE"]),
    Route("/api/admin/mechanics", create_mechanic, methods=["POST"]),
    Route("/api/admin/mechanics/{mechanic_id}", delete_mechanic, methods=["DELETE"]),
    Route("/api/admin/session-requests/{request_id}/events", request_events),
    Route("/api/admin/kpis", kpis),
    Route("/api/admin/kpis/chart.svg", kpi_chart),
    Route("/api/admin/mechanics/online", online_mechanics),
    Route("/api/admin/session-requests", open_requests),
    Route("/api/session-requests", create_request, methods=["POST"]),
    Route("/api/session-requests/{request_id}", get_request),
    Route("/api/session-requests/{request_id}/cancel", cancel_request, methods=["POST"]),
    Route("/api/session-requests/{request_id}/complete", complete_request, methods=["POST"]),
    Route("/api/session-requests/{request_id}/favorite-prompt/dismiss", dismiss_favorite_prompt, methods=["POST"]),
]
