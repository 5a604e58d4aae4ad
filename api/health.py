"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import schemas
from api.context import services
from api.openapi import OPENAPI
from api.responses import typed


async def healthz(request: Request) -> Response:
    return typed(schemas.Health(status="ok"))


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


routes = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/openapi.json", openapi, include_in_schema=False),
]
