"""Presence's Prometheus metrics (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTED_SOCKETS = Gauge(
    "favdispatch_connected_sockets", "Mechanics' sockets open on this server", multiprocess_mode="livesum"
)
ONLINE_MECHANICS = Gauge(
    "favdispatch_online_mechanics", "Mechanics online across all servers (read from Redis)", multiprocess_mode="max"
)
HEARTBEATS = Counter("favdispatch_heartbeats_total", "Heartbeats received")
