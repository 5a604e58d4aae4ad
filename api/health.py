"""Liveness and readiness."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import schemas
from api.context import services
from api.endpoints import Endpoints
from api.responses import typed

endpoint = Endpoints()


@endpoint("get", "/healthz", "Liveness: the process answers.", response=schemas.Health)
async def healthz(request: Request) -> Response:
    return typed(schemas.Health(status="ok"))


@endpoint(
    "get",
    "/readyz",
    "Readiness: Redis and the database answer, and the schema is migrated to the head (503 names which is not).",
    response=schemas.Readiness,
    also=(503,),
)
async def readyz(request: Request) -> Response:
    svc = services(request)
    checks = {"redis": True, "database": True, "schema": True}
    try:
        await svc.redis.ping()
    except (RedisError, OSError):
        checks["redis"] = False
    try:
        await svc.database.fetch_val("SELECT 1")
    except Exception:  # noqa: BLE001  (each driver raises its own errors; any of them means not ready)
        checks["database"] = False
    checks["schema"] = checks["database"] and await svc.schema.is_current()
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
