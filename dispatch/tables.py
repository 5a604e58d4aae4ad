"""Dispatch's tables, on the metadata presence defines (imports point dispatch -> presence)."""

from __future__ import annotations

import sqlalchemy as sa

from base.tables import UUID, metadata

# A team of mechanics a customer can favorite: a booking for it goes to whichever member takes it first.
workshops = sa.Table(
    "workshops",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
)

favorites = sa.Table(
    "favorites",
    metadata,
    sa.Column("customer_id", UUID, nullable=False),
    # A mechanic's id (`provider_type` independent) or a workshop's (workshop).
    sa.Column("provider_id", UUID, nullable=False),
    sa.Column("provider_type", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("customer_id", "provider_id", name="uq_favorites_customer_provider"),
)

OPEN_FAVORITE = (
    "status IN ('pending', 'accepted') AND preferred_mechanic_id IS NOT NULL AND checkout_session_id IS NULL"
)
OPEN_WORKSHOP = (
    "status IN ('pending', 'accepted') AND preferred_workshop_id IS NOT NULL AND checkout_session_id IS NULL"
)

session_requests = sa.Table(
    "session_requests",
    metadata,
    # The seed's columns.
    sa.Column("id", UUID, primary_key=True),
    sa.Column("customer_id", UUID, nullable=False),
    sa.Column("session_type", sa.String(20), nullable=False),
    sa.Column("plan_code", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("preferred_workshop_id", UUID, nullable=True),
    sa.Column("preferred_mechanic_id", UUID, sa.ForeignKey("mechanics.id"), nullable=True),
    sa.Column("routing_type", sa.String(30), nullable=False),
    sa.Column("priority_window_minutes", sa.Integer, nullable=True),
    sa.Column("priority_notified_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fallback_broadcast_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("mechanic_id", UUID, sa.ForeignKey("mechanics.id"), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
    # Routing state: the database is the source of truth for every deadline.
    sa.Column("routing", sa.String(20), nullable=False),
    sa.Column("provider_type", sa.String(20), nullable=True),
    sa.Column("customer_name", sa.String(200), nullable=True),
    sa.Column("phase", sa.String(20), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("priority_deadline", sa.DateTime(timezone=True), nullable=True),
    sa.Column("offer_acked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("offer_resends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ack_deadline", sa.DateTime(timezone=True), nullable=True),
    sa.Column("reroute_reason", sa.String(30), nullable=True),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    # The A/B arm (priority | control), the Stripe Checkout Session that paid for it, the dismissed prompt.
    sa.Column("arm", sa.String(20), nullable=False, server_default="priority"),
    sa.Column("checkout_session_id", sa.String(255), nullable=True),
    sa.Column("favorite_prompt_dismissed_at", sa.DateTime(timezone=True), nullable=True),
    # Set by every change that devices must hear of, cleared once its frames are published (`dispatch/owed.py`).
    sa.Column("owed_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("checkout_session_id", name="uq_session_requests_checkout_session"),
    sa.Index(
        "idx_session_requests_preferred_mechanic",
        "preferred_mechanic_id",
        postgresql_where=sa.text("preferred_mechanic_id IS NOT NULL"),
        sqlite_where=sa.text("preferred_mechanic_id IS NOT NULL"),
    ),
    sa.Index("idx_session_requests_open_deadlines", "status", "phase", "priority_deadline"),
    sa.Index("idx_session_requests_customer", "customer_id", "created_at"),
    sa.Index(
        "idx_session_requests_owed",
        "owed_at",
        postgresql_where=sa.text("owed_at IS NOT NULL"),
        sqlite_where=sa.text("owed_at IS NOT NULL"),
    ),
    # At most one open request per customer and favorite ("Book Again" twice is one booking). Paid bookings are
    # checked at checkout instead: a paid booking is never refused.
    sa.Index(
        "uq_session_requests_open_favorite",
        "customer_id",
        "preferred_mechanic_id",
        unique=True,
        postgresql_where=sa.text(OPEN_FAVORITE),
        sqlite_where=sa.text(OPEN_FAVORITE),
    ),
    sa.Index(
        "uq_session_requests_open_workshop",
        "customer_id",
        "preferred_workshop_id",
        unique=True,
        postgresql_where=sa.text(OPEN_WORKSHOP),
        sqlite_where=sa.text(OPEN_WORKSHOP),
    ),
)

request_events = sa.Table(
    "request_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", UUID, sa.ForeignKey("session_requests.id"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("mechanic_id", UUID, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("detail", sa.String(500), nullable=True),
    sa.Index("idx_request_events_request", "request_id", "id"),
)

# Mechanics who declined or gave back a request: never offered it again, and refused if they accept.
request_exclusions = sa.Table(
    "request_exclusions",
    metadata,
    sa.Column("request_id", UUID, sa.ForeignKey("session_requests.id"), nullable=False),
    sa.Column("mechanic_id", UUID, nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),
    sa.PrimaryKeyConstraint("request_id", "mechanic_id", name="pk_request_exclusions"),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

# Every Stripe event handled once: Stripe delivers at least once, retries for days and does not keep order.
stripe_events = sa.Table(
    "stripe_events",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("checkout_session_id", sa.String(255), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.String(30), nullable=False),
)

# Idempotency-Key (Stripe's convention): written in the transaction of the booking it made, so a retry finds the
# booking or books it; replayed for the same key and body for 24 hours.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True),  # the token's subject: keys are per user
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # sha256 of method, path and body
    sa.Column("request_id", UUID, nullable=False),  # the booking this key made
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Web Push: a mechanic's devices that receive notifications with the app closed (a browser's PushSubscription).
push_subscriptions = sa.Table(
    "push_subscriptions",
    metadata,
    sa.Column("id", UUID, primary_key=True),
    sa.Column("mechanic_id", UUID, nullable=False),
    sa.Column("endpoint", sa.String(2048), nullable=False),
    sa.Column("p256dh", sa.String(200), nullable=False),
    sa.Column("auth", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("endpoint", name="uq_push_subscriptions_endpoint"),
    sa.Index("idx_push_subscriptions_mechanic", "mechanic_id"),
)

# One row per request and device pushed to: whoever inserts it sends the push, on whichever process.
push_deliveries = sa.Table(
    "push_deliveries",
    metadata,
    sa.Column("request_id", UUID, nullable=False),
    sa.Column("subscription_id", UUID, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("request_id", "subscription_id", name="pk_push_deliveries"),
)
