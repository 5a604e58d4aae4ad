"""Mechanics' and workshops' live status: from the presence replica and the cached records, no round trip."""

from __future__ import annotations

import re
import time
from datetime import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api import schemas
from api.auth import Principal, Role
from api.context import authenticate, caller, services
from api.endpoints import ANY, Endpoints
from api.etags import conditional, mechanic_state
from api.responses import error_response, send_response, typed
from api.runtime import Services
from base.clock import iso, iso_ms, now_ms, utc_now
from base.errors import InvalidInput, MechanicNotFound
from base.ids import canonical_id
from delivery.uvicorn_protocols import skip_access_line
from dispatch.mechanics import Mechanic
from dispatch.rollout import Arm
from dispatch.workshops import Workshop
from presence.replica import LiveStatus
from presence.tracker import last_seen_of

endpoint = Endpoints()

MAX_STATUS_IDS = 100
_encode = msgspec.json.Encoder().encode


def live_statuses(svc: Services, found: list[Mechanic], principal: Principal) -> dict[str, schemas.MechanicStatus]:
    """From memory: the presence replica, and the database's last_seen (cached with the mechanic) for those
    Redis has not seen since it lost its keys."""
    live = svc.presence.statuses([m.id for m in found])
    priority_booking = _priority_booking(svc, principal)
    return {m.id: status_json(m, live[m.id], m.last_seen_at, priority_booking) for m in found}


def status_json(
    mechanic: Mechanic, live: LiveStatus, persisted: datetime | None, priority_booking: bool | None
) -> schemas.MechanicStatus:
    last_seen: str | None
    seconds: int | None
    if live.last_seen_ms is not None:  # Redis's, the freshest (online: now)
        last_seen, seconds = iso_ms(live.last_seen_ms), max(0, (now_ms() - live.last_seen_ms) // 1000)
    else:  # Redis has not seen them since it lost its keys: the database's copy stands in
        last_seen, seconds = iso(persisted), seconds_since(persisted)
    return schemas.MechanicStatus(
        mechanic_id=mechanic.id,
        name=mechanic.name,
        is_online=live.is_online,
        last_seen=last_seen,
        last_seen_seconds=seconds,
        priority_booking=priority_booking,
    )


def seconds_since(last_seen: datetime | None) -> int | None:
    """What "last seen 2 hours ago" is computed from; None for a mechanic never seen."""
    return max(0, int((utc_now() - last_seen).total_seconds())) if last_seen else None


def _priority_booking(svc: Services, principal: Principal) -> bool | None:
    """Whether this customer's bookings may go to a favorite first (the A/B rollout); None for other roles."""
    if principal.role is not Role.CUSTOMER:
        return None
    return svc.dispatcher.arm_of(principal.sub) is Arm.PRIORITY


@endpoint(
    "get",
    "/api/mechanics/{mechanic_id}/status",
    "Online now, or offline and last seen when (from memory: no Redis or database round trip).",
    ANY,
    response=schemas.MechanicStatus,
    errors=(401, 404),
    conditional=True,
)
async def mechanic_status(request: Request) -> Response:
    return await _mechanic_status(request, caller(request), request.path_params["mechanic_id"])


async def _mechanic_status(request: Request, principal: Principal, mechanic_id: str) -> Response:
    svc = services(request)
    mechanic = await svc.mechanics.get(mechanic_id)
    status = live_statuses(svc, [mechanic], principal)[mechanic.id]
    return conditional(request, [mechanic_state(status)], lambda: _encode(status))


POLL_PATH = re.compile(r"/api/mechanics/([^/]+)/status")


async def poll(scope: Scope, receive: Receive, send: Send, mechanic_id: str) -> None:
    """`GET /api/mechanics/{id}/status` as a plain ASGI endpoint: every customer app polls it, and Starlette's
    router and two middlewares cost as much as the answer itself. Errors are answered as the handlers do. Its
    access lines are summarised (`api/poll_log.py`)."""
    started = time.perf_counter()
    request = Request(scope, receive)
    try:
        # Past the router, so it lets callers in itself, as the route's declared roles (any) would.
        response = await _mechanic_status(request, authenticate(request), mechanic_id)
    except Exception as exc:  # noqa: BLE001 (what ServerErrorMiddleware would do: a JSON 500, logged)
        response = await error_response(request, exc)
    poll_log = services(request).poll_log
    if poll_log.summarises(response.status_code):
        skip_access_line(send)
    await send_response(response, scope, receive, send)
    poll_log.record(response.status_code, time.perf_counter() - started)


async def workshop_presence(svc: Services, workshop: Workshop) -> tuple[list[str], datetime | None]:
    """The names of the members online, and when the last of them was seen (members are cached like
    mechanics)."""
    members = await svc.mechanics.get_many(list(workshop.member_ids))
    live = svc.presence.statuses([m.id for m in members])
    seen = [s for m in members if (s := last_seen_of(live[m.id], m.last_seen_at)) is not None]
    return [m.name for m in members if live[m.id].is_online], max(seen, default=None)


@endpoint(
    "get",
    "/api/workshops/{workshop_id}/status",
    "A workshop's status: online while any member is, `last_seen` the latest of its members' (from memory).",
    ANY,
    response=schemas.WorkshopStatus,
    errors=(401, 404),
)
async def workshop_status(request: Request) -> Response:
    """Online while any member is; `last_seen` the latest of its members'."""
    principal = caller(request)
    svc = services(request)
    workshop = await svc.workshops.get(request.path_params["workshop_id"])
    online, last_seen = await workshop_presence(svc, workshop)
    return typed(
        schemas.WorkshopStatus(
            workshop_id=workshop.id,
            name=workshop.name,
            is_online=bool(online),
            online_count=len(online),
            online_members=online,
            last_seen=iso(last_seen),
            last_seen_seconds=seconds_since(last_seen),
            priority_booking=_priority_booking(svc, principal),
        )
    )


@endpoint(
    "get",
    "/api/mechanics/status",
    "The status of up to 100 mechanics at once (`ids`, comma-separated); unknown ids get an error entry.",
    ANY,
    response=schemas.StatusBatch,
    errors=(401, 422),
    conditional=True,
    query={"ids": {"type": "string", "minLength": 1}},
    required_query=("ids",),
)
async def mechanics_status(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    ids = [i.strip() for i in request.query_params.get("ids", "").split(",") if i.strip()]
    if not ids:
        raise InvalidInput("ids is required: a comma-separated list of mechanic ids.")
    if len(ids) > MAX_STATUS_IDS:
        raise InvalidInput(f"At most {MAX_STATUS_IDS} ids per request.")
    statuses = live_statuses(svc, await svc.mechanics.get_many(ids), principal)
    entries: list[schemas.MechanicStatus | schemas.UnknownMechanic] = []
    states: list[tuple[object, ...]] = []
    for requested in ids:
        canonical = canonical_id(requested)
        status = statuses.get(canonical) if canonical else None
        if status is None:
            entries.append(
                schemas.UnknownMechanic(
                    mechanic_id=requested, error=MechanicNotFound.code, message=MechanicNotFound.default_message
                )
            )
            states.append((requested, MechanicNotFound.code))
        else:
            entries.append(status)
            states.append(mechanic_state(status))
    return conditional(request, states, lambda: _encode({"mechanics": entries}))
