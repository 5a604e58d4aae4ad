"""`GET /metrics` in Prometheus' text format: admins only, and loopback scrapers where METRICS_OPEN_TO_LOOPBACK.

With PROMETHEUS_MULTIPROC_DIR set (`make run WORKERS=n` sets it), every worker's samples are aggregated.
"""

from __future__ import annotations

import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.auth import Role
from api.context import authenticate, services
from api.endpoints import ADMIN, Endpoints
from api.responses import typed
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


@endpoint(
    "get",
    "/api/admin/presence-accuracy",
    "How right 'online' is: offline lag after a device's last frame, ghosts, flaps, offers to the offline "
    "(definitions: docs/kpis.md).",
    ADMIN,
    response=schemas.PresenceAccuracy,
    errors=(401, 403),
)
async def presence_accuracy(request: Request) -> Response:
    svc = services(request)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in _registry(svc.settings.prometheus_multiproc_dir).collect()
        if family.name.startswith(("favdispatch_presence", "favdispatch_offers_to_offline"))
        for sample in family.samples
    }
    ttl = svc.settings.presence_ttl_s
    return typed(
        schemas.PresenceAccuracy(
            online=len(svc.presence.online_ids()),
            expected_offline_lag_s=[ttl, round(ttl + svc.sockets.sweep_s, 3)],
            offline_lag={cause: _lag(samples, cause) for cause in ("silent", "expired")},
            ghosts=int(samples.get(("favdispatch_presence_ghosts", ()), 0)),
            flaps=int(samples.get(("favdispatch_presence_flaps_total", ()), 0)),
            offers_to_offline=int(samples.get(("favdispatch_offers_to_offline_total", ()), 0)),
        )
    )


def _lag(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], cause: str) -> schemas.OfflineLag:
    """A cause's count and quantiles, read off its cumulative buckets (each quantile: its bucket's upper bound)."""
    name = "favdispatch_presence_offline_lag_seconds"
    buckets = sorted(
        (float(labels["le"]), count)
        for (sample, key), count in samples.items()
        if sample == f"{name}_bucket" and (labels := dict(key)).get("cause") == cause
    )
    total = int(samples.get((f"{name}_count", (("cause", cause),)), 0))

    def quantile(q: float) -> float | None:
        return next((bound for bound, count in buckets if total and count >= q * total), None)

    return schemas.OfflineLag(count=total, p50_s=quantile(0.5), p99_s=quantile(0.99))
