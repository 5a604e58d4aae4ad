"""Presence's Prometheus metrics (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ONLINE_MECHANICS = Gauge("favdispatch_online_mechanics", "Mechanics online across all servers", multiprocess_mode="max")
HEARTBEATS = Counter("favdispatch_heartbeats_total", "Heartbeats received")

# How right "online" is (docs/kpis.md says what each means and what to do when it drifts).
OFFLINE_LAG = Histogram(
    "favdispatch_presence_offline_lag_seconds",
    "From a device's last frame to its mechanic's offline transition, by how it ended: silent (this server closed "
    "a socket silent for the TTL) or expired (Redis expired the presence of a server that died); clean closes are "
    "immediate and not counted",
    ["cause"],
    buckets=(1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 60, 90, 120, 300),
)
GHOSTS = Gauge(
    "favdispatch_presence_ghosts",
    "Mechanics shown online whose last heartbeat is older than the presence TTL, at the last check",
    multiprocess_mode="max",
)
FLAPS = Counter("favdispatch_presence_flaps_total", "Mechanics back online within a minute of going offline")
