"""Operations on workshops: create, list, delete, and add or remove members (a mechanic works for at most one)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import schemas
from api.auth import Role
from api.context import authenticate, services
from api.responses import read_json, typed
from api.runtime import Services
from api.schemas import WorkshopBody
from base.errors import InvalidInput
from dispatch.workshops import Workshop


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


async def create_workshop(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    body = await read_json(request, WorkshopBody)
    name = body.name.strip()
    if not name:
        raise InvalidInput("name is required.")
    svc = services(request)
    return typed(await workshop_view(svc, await svc.workshops.create(name)), status_code=201)


async def list_workshops(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    return typed(schemas.Workshops(workshops=[await workshop_view(svc, w) for w in await svc.workshops.every()]))


async def delete_workshop(request: Request) -> Response:
    """Soft-delete: its members become independent, favorites forget it, its priority requests fall back."""
    authenticate(request, Role.ADMIN)
    await services(request).dispatcher.forget_workshop(request.path_params["workshop_id"])
    return Response(status_code=204)


async def add_member(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    workshop = await svc.dispatcher.add_member(request.path_params["workshop_id"], request.path_params["mechanic_id"])
    return typed(await workshop_view(svc, workshop))


async def remove_member(request: Request) -> Response:
    authenticate(request, Role.ADMIN)
    svc = services(request)
    workshop = await svc.dispatcher.remove_member(
        request.path_params["workshop_id"], request.path_params["mechanic_id"]
    )
    return typed(await workshop_view(svc, workshop))


routes = [
    Route("/api/admin/workshops", create_workshop, methods=["POST"]),
    Route("/api/admin/workshops", list_workshops, methods=["GET"]),
    Route("/api/admin/workshops/{workshop_id}", delete_workshop, methods=["DELETE"]),
    Route("/api/admin/workshops/{workshop_id}/members/{mechanic_id}", add_member, methods=["PUT"]),
    Route("/api/admin/workshops/{workshop_id}/members/{mechanic_id}", remove_member, methods=["DELETE"]),
]
