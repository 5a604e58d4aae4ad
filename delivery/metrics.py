"""Delivery's Prometheus metrics (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTED_SOCKETS = Gauge(
    "favdispatch_connected_sockets", "Mechanics' sockets open on this server", multiprocess_mode="livesum"
)
SLOW_CLIENTS_DROPPED = Counter("favdispatch_slow_clients_dropped_total", "Sockets dropped for not reading")
