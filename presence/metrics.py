"""Presence's Prometheus metrics (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ONLINE_MECHANICS = Gauge("favdispatch_online_mechanics", "Mechanics online across all servers", multiprocess_mode="max")
HEARTBEATS = Counter("favdispatch_heartbeats_total", "Heartbeats received")
