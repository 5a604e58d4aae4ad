"""Operations on workshops: create, list, delete, and add or remove members (a mechanic works for at most one)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.context import services
from api.endpoints import ADMIN, BODY_ERRORS, Endpoints
from api.responses import read_json, typed
from api.runtime import Services
from api.schemas import WorkshopBody
from base.errors import InvalidInput
from dispatch.workshops import Workshop

endpoint = Endpoints()


async def workshop_view(svc: Services, workshop: Workshop) -> schemas.Workshop:
    members = {m.id: m for m in await svc.mechanics.get_many(list(workshop.member_ids))}
    live = svc.presence.statuses(list(members))
    return schemas.Workshop(
        id=workshop.id,
        name=workshop.name,
        members=[
            schemas.WorkshopMember(mechanic_id=i, name=members[i].name, is_online=live[i].is_online)
            for i in workshop.member_ids
            if i in members
        ],
    )


@endpoint(
    "post",
    "/api/admin/workshops",
    "Create a workshop: a team a customer can favorite, any member of which may take its bookings.",
    ADMIN,
    body=schemas.WorkshopBody,
    response=schemas.Workshop,
    status=201,
    errors=(401, 403, *BODY_ERRORS),
)
async def create_workshop(request: Request) -> Response:
    body = await read_json(request, WorkshopBody)
    name = body.name.strip()
    if not name:
        raise InvalidInput("name is required.")
    svc = services(request)
    return typed(await workshop_view(svc, await svc.workshops.create(name)), status_code=201)


@endpoint(
    "get",
    "/api/admin/workshops",
    "Every workshop with its members and who of them is online.",
    ADMIN,
    response=schemas.Workshops,
    errors=(401, 403),
)
async def list_workshops(request: Request) -> Response:
    svc = services(request)
    return typed(schemas.Workshops(workshops=[await workshop_view(svc, w) for w in await svc.workshops.every()]))


@endpoint(
    "delete",
    "/api/admin/workshops/{workshop_id}",
    "Delete a workshop: its members become independent, favorites forget it, its priority requests fall back.",
    ADMIN,
    status=204,
    errors=(401, 403, 404),
)
async def delete_workshop(request: Request) -> Response:
    """Soft-delete: its members become independent, favorites forget it, its priority requests fall back."""
    await services(request).dispatcher.forget_workshop(request.path_params["workshop_id"])
    return Response(status_code=204)


@endpoint(
    "put",
    "/api/admin/workshops/{workshop_id}/members/{mechanic_id}",
    "Add a mechanic to a workshop (idempotent; 409 when they belong to another workshop).",
    ADMIN,
    response=schemas.Workshop,
    errors=(401, 403, 404, 409),
)
async def add_member(request: Request) -> Response:
    svc = services(request)
    workshop = await svc.dispatcher.add_member(request.path_params["workshop_id"], request.path_params["mechanic_id"])
    return typed(await workshop_view(svc, workshop))


@endpoint(
    "delete",
    "/api/admin/workshops/{workshop_id}/members/{mechanic_id}",
    "Remove a mechanic from a workshop (idempotent); a workshop left empty is a favorite gone.",
    ADMIN,
    response=schemas.Workshop,
    errors=(401, 403, 404),
)
async def remove_member(request: Request) -> Response:
    svc = services(request)
    workshop = await svc.dispatcher.remove_member(
        request.path_params["workshop_id"], request.path_params["mechanic_id"]
    )
    return typed(await workshop_view(svc, workshop))
