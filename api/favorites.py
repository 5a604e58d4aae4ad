"""A customer's favorites: add after a good session, list with live status, remove."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import schemas
from api.auth import Role
from api.context import authenticate, provider_type_of, services
from api.responses import read_json, typed
from api.schemas import FavoriteBody
from api.statuses import seconds_since
from base.clock import iso
from presence.tracker import last_seen_of


async def list_favorites(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    svc = services(request)
    favorites = await svc.favorites.list(principal.sub)
    live = svc.presence.statuses([f.provider_id for f in favorites])
    body = []
    for favorite in favorites:
        last_seen = last_seen_of(live[favorite.provider_id], favorite.last_seen_at)
        body.append(
            schemas.Favorite(
                provider_id=favorite.provider_id,
                provider_type=favorite.provider_type,
                name=favorite.name,
                booking_count=favorite.booking_count,
                created_at=iso(favorite.created_at),
                is_online=live[favorite.provider_id].is_online,
                last_seen=iso(last_seen),
                last_seen_seconds=seconds_since(last_seen),
            )
        )
    return typed(schemas.Favorites(favorites=body))


async def add_favorite(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    body = await read_json(request, FavoriteBody)
    provider_type = provider_type_of(body.provider_type)
    svc = services(request)
    mechanic, is_new = await svc.favorites.add(principal.sub, body.provider_id, provider_type)
    added = schemas.FavoriteAdded(provider_id=mechanic.id, provider_type=provider_type.value, name=mechanic.name)
    return typed(added, status_code=201 if is_new else 200)


async def remove_favorite(request: Request) -> Response:
    principal = authenticate(request, Role.CUSTOMER)
    await services(request).favorites.remove(principal.sub, request.path_params["provider_id"])
    return Response(status_code=204)


routes = [
    Route("/api/customer/favorites", list_favorites, methods=["GET"]),
    Route("/api/customer/favorites", add_favorite, methods=["POST"]),
    Route("/api/customer/favorites/{provider_id}", remove_favorite, methods=["DELETE"]),
]
