"""`GET /metrics` in Prometheus' text format: admins only, and loopback scrapers where METRICS_OPEN_TO_LOOPBACK.

With PROMETHEUS_MULTIPROC_DIR set (`make run WORKERS=n` sets it), every worker's samples are aggregated.
"""

from __future__ import annotations

import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response

from api.auth import Role
from api.context import authenticate, services
from api.endpoints import ADMIN, Endpoints
from presence.metrics import ONLINE_MECHANICS

endpoint = Endpoints()


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _registry(multiprocess_dir: str | None) -> CollectorRegistry:
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


@endpoint(
    "get",
    "/metrics",
    "Prometheus metrics (admin; loopback too where METRICS_OPEN_TO_LOOPBACK).",
    ADMIN,
    media_type="text/plain",
    errors=(401, 403),
    checks_its_caller=True,
)
async def metrics(request: Request) -> Response:
    svc = services(request)
    loopback = _is_loopback(request.client.host if request.client else None)
    if not (svc.settings.metrics_open_to_loopback and loopback):
        authenticate(request, Role.ADMIN)
    ONLINE_MECHANICS.set(len(svc.presence.online_ids()))
    registry = _registry(svc.settings.prometheus_multiproc_dir)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
