"""A customer's favorite mechanics and workshops: add after a good session, list with live status, remove."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.context import caller, provider_type_of, services
from api.endpoints import BODY_ERRORS, CUSTOMER, Endpoints
from api.etags import conditional, favorite_state
from api.responses import read_json, typed
from api.runtime import Services
from api.schemas import FavoriteBody
from api.statuses import seconds_since, workshop_presence
from base.clock import iso
from base.errors import WorkshopNotFound
from dispatch.favorites import Favorite
from dispatch.mechanics import ProviderType
from presence.tracker import last_seen_of

endpoint = Endpoints()
_encode = msgspec.json.Encoder().encode


@endpoint(
    "get",
    "/api/customer/favorites",
    "Your favorite mechanics and workshops with their live status.",
    CUSTOMER,
    response=schemas.Favorites,
    errors=(401, 403),
    conditional=True,
)
async def list_favorites(request: Request) -> Response:
    principal = caller(request)
    svc = services(request)
    entries = await favorite_entries(svc, await svc.favorites.list(principal.sub))
    listed = schemas.Favorites(favorites=entries)
    return conditional(request, map(favorite_state, entries), lambda: _encode(listed))


async def favorite_entries(svc: Services, favorites: Sequence[Favorite]) -> list[schemas.Favorite]:
    """The favorites with their live status, from memory (the presence replica, the cached workshops): what the
    list answers and the live stream sends."""
    live = svc.presence.statuses([f.provider_id for f in favorites if f.provider_type != ProviderType.WORKSHOP])
    entries = []
    for favorite in favorites:
        online_members: list[str] | None = None
        if favorite.provider_type == ProviderType.WORKSHOP:
            try:
                workshop = await svc.workshops.get(favorite.provider_id)
            except WorkshopNotFound:
                continue  # deleted since the list was read
            online_members, last_seen = await workshop_presence(svc, workshop)
            is_online = bool(online_members)
        else:
            last_seen = last_seen_of(live[favorite.provider_id], favorite.last_seen_at)
            is_online = live[favorite.provider_id].is_online
        entries.append(
            schemas.Favorite(
                provider_id=favorite.provider_id,
                provider_type=favorite.provider_type,
                name=favorite.name,
                booking_count=favorite.booking_count,
                created_at=iso(favorite.created_at),
                is_online=is_online,
                last_seen=iso(last_seen),
                last_seen_seconds=seconds_since(last_seen),
                online_count=None if online_members is None else len(online_members),
                online_members=online_members,
            )
        )
    return entries


@endpoint(
    "post",
    "/api/customer/favorites",
    "Save a mechanic (`provider_type` independent) or a workshop as a favorite (201 when new, 200 when already saved).",
    CUSTOMER,
    body=schemas.FavoriteBody,
    response=schemas.FavoriteAdded,
    status=201,
    also=(200,),
    errors=(401, 403, 404, *BODY_ERRORS),
)
async def add_favorite(request: Request) -> Response:
    principal = caller(request)
    body = await read_json(request, FavoriteBody)
    provider_type = provider_type_of(body.provider_type)
    svc = services(request)
    provider_id, name, is_new = await svc.favorites.add(principal.sub, body.provider_id, provider_type)
    added = schemas.FavoriteAdded(provider_id=provider_id, provider_type=provider_type.value, name=name)
    return typed(added, status_code=201 if is_new else 200)


@endpoint(
    "delete",
    "/api/customer/favorites/{provider_id}",
    "Remove a favorite.",
    CUSTOMER,
    status=204,
    errors=(401, 403, 404),
)
async def remove_favorite(request: Request) -> Response:
    principal = caller(request)
    await services(request).favorites.remove(principal.sub, request.path_params["provider_id"])
    return Response(status_code=204)
