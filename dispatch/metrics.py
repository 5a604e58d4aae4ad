"""Dispatch's Prometheus metrics (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OFFERS_SENT = Counter("favdispatch_offers_sent_total", "Offers published, by kind", ["kind"])
OFFER_ACKS = Counter("favdispatch_offer_acks_total", "Offer acks received")
OFFERS_TO_OFFLINE = Counter(
    "favdispatch_offers_to_offline_total",
    "Priority offers that found no device of the mechanic they were for (offline by the time they went out)",
)
OFFER_RESENDS = Counter("favdispatch_offer_resends_total", "Priority offers resent for want of an ack")
FALLBACKS = Counter("favdispatch_fallbacks_total", "Requests that fell back to broadcast, by reason", ["reason"])
ACCEPTS = Counter("favdispatch_accepts_total", "Accepted requests, by routing type", ["routing_type"])
TIME_TO_ACCEPT = Histogram(
    "favdispatch_time_to_accept_seconds",
    "From creation to accept, by routing type",
    ["routing_type"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600),
)
FALLBACK_LATENESS = Histogram(
    "favdispatch_fallback_lateness_seconds",
    "From a priority window's deadline to its fallback broadcast",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUSHES_SENT = Counter("pushes_sent", "Web Push notifications, by outcome (sent, failed, gone)", ["outcome"])
FAVORITES_STREAMS = Gauge(
    "favdispatch_favorites_streams", "Customers' favorites streams open, per process", multiprocess_mode="livesum"
)
