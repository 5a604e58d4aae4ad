"""The HTTP contract as types: every request body the API reads is one `msgspec.Struct`.

Decoding a body validates it (types, lengths, unknown enum values are left to the domain's own messages), and
the OpenAPI document's request schemas are generated from the same types.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from base.text import PLAIN_TEXT
from dispatch.views import AssignedSession as AssignedSession  # read models, returned by the API as they are
from dispatch.views import Event as Event
from dispatch.views import Events as Events
from dispatch.views import FavoritePrompt as FavoritePrompt
from dispatch.views import MechanicSessions as MechanicSessions
from dispatch.views import SessionRequest as SessionRequest
from dispatch.views import SessionRequests as SessionRequests
from dispatch.views import Timestamp

Short = Annotated[str, msgspec.Meta(max_length=20, pattern=PLAIN_TEXT)]
Id = Annotated[str, msgspec.Meta(max_length=64, pattern=PLAIN_TEXT)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=PLAIN_TEXT)]
Endpoint = Annotated[str, msgspec.Meta(max_length=2048, pattern=PLAIN_TEXT)]


# Choice fields: validated by the decoder and listed in the schema (`tests/test_contract.py` holds them to the
# domain's enums: `SessionType`, `Routing`, `ProviderType`).
SessionTypeChoice = Literal["chat", "video", "diagnostic"]
RoutingChoice = Literal["priority", "notify_and_wait", "broadcast"]
ProviderTypeChoice = Literal["independent", "workshop"]


class BookingBody(msgspec.Struct, frozen=True):
    """`POST /api/session-requests` and `POST /api/checkout`."""

    session_type: SessionTypeChoice
    plan_code: Short
    routing: RoutingChoice = "broadcast"
    preferred_mechanic_id: Id | None = None
    preferred_workshop_id: Annotated[
        Id | None, msgspec.Meta(description="A favorite workshop instead of a mechanic: any member may take it.")
    ] = None
    provider_type: ProviderTypeChoice | None = None


class FavoriteBody(msgspec.Struct, frozen=True):
    provider_id: Id
    provider_type: ProviderTypeChoice | None = None


class MechanicBody(msgspec.Struct, frozen=True):
    name: Name
    provider_type: ProviderTypeChoice | None = None


class WorkshopBody(msgspec.Struct, frozen=True):
    name: Name


class PushKeys(msgspec.Struct, frozen=True):
    p256dh: Annotated[str, msgspec.Meta(max_length=200, pattern=PLAIN_TEXT)]
    auth: Annotated[str, msgspec.Meta(max_length=100, pattern=PLAIN_TEXT)]


class PushSubscriptionBody(msgspec.Struct, frozen=True):
    """A browser's `PushSubscription.toJSON()` (its `expirationTime` is ignored)."""

    endpoint: Endpoint
    keys: PushKeys


class PushEndpoint(msgspec.Struct, frozen=True):
    """`DELETE /api/mechanic/push-subscriptions`: which subscription."""

    endpoint: Endpoint


# Responses. Timestamps are ISO-8601 UTC with milliseconds; ids are UUIDs.


class Error(msgspec.Struct, frozen=True, omit_defaults=True):
    error: str
    message: str
    request_id: str | None = None  # the request a conflict is about (request_already_open)


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, bool]


class MechanicStatus(msgspec.Struct, frozen=True):
    mechanic_id: str
    name: str
    is_online: bool
    last_seen: Timestamp | None
    last_seen_seconds: int | None
    priority_booking: Annotated[
        bool | None, msgspec.Meta(description="For customers: whether their bookings go to a favorite first (A/B).")
    ]


class UnknownMechanic(msgspec.Struct, frozen=True):
    """A batch status entry for an id that names no mechanic."""

    mechanic_id: str
    error: str
    message: str


class StatusEntry(msgspec.Struct, frozen=True):
    """How the batch documents its entries: a `MechanicStatus`, or an `UnknownMechanic` (error, message)."""

    mechanic_id: str
    name: str | None = None
    is_online: bool | None = None
    last_seen: Timestamp | None = None
    last_seen_seconds: int | None = None
    priority_booking: bool | None = None
    error: str | None = None
    message: str | None = None


class StatusBatch(msgspec.Struct, frozen=True):
    mechanics: list[StatusEntry]


class Favorite(msgspec.Struct, frozen=True):
    provider_id: str
    provider_type: str
    name: str
    booking_count: int
    created_at: Timestamp | None
    is_online: bool
    last_seen: Timestamp | None
    last_seen_seconds: int | None
    online_count: Annotated[
        int | None, msgspec.Meta(description="A workshop's members online now; null for a mechanic.")
    ] = None
    online_members: Annotated[
        list[str] | None, msgspec.Meta(description="The names of a workshop's members online now; null for a mechanic.")
    ] = None


class VapidPublicKey(msgspec.Struct, frozen=True):
    enabled: bool
    public_key: Annotated[
        str | None, msgspec.Meta(description="The `applicationServerKey` to subscribe with (base64url); null when off.")
    ]


class PushSubscriptionSaved(msgspec.Struct, frozen=True):
    endpoint: str


class WorkshopStatus(msgspec.Struct, frozen=True):
    """Online while any member is; `last_seen` is the latest of its members'."""

    workshop_id: str
    name: str
    is_online: bool
    online_count: int
    online_members: Annotated[list[str], msgspec.Meta(description="The names of the members online now.")]
    last_seen: Timestamp | None
    last_seen_seconds: int | None
    priority_booking: Annotated[
        bool | None, msgspec.Meta(description="For customers: whether their bookings go to a favorite first (A/B).")
    ]


class WorkshopMember(msgspec.Struct, frozen=True):
    mechanic_id: str
    name: str
    is_online: bool


class Workshop(msgspec.Struct, frozen=True):
    id: str
    name: str
    members: list[WorkshopMember]


class Workshops(msgspec.Struct, frozen=True):
    workshops: list[Workshop]


class Favorites(msgspec.Struct, frozen=True):
    favorites: list[Favorite]


class FavoriteAdded(msgspec.Struct, frozen=True):
    provider_id: str
    provider_type: str
    name: str


class FavoriteRemoved(msgspec.Struct, frozen=True):
    """The favorites stream's `removed` event."""

    provider_id: str
    reason: Annotated[
        str, msgspec.Meta(description="`removed` by you (from any device), or `deleted` from the platform.")
    ]


class StreamTicket(msgspec.Struct, frozen=True):
    ticket: Annotated[
        str, msgspec.Meta(description="Pass as `?ticket=` to the favorites stream: valid there only, for a minute.")
    ]
    expires_in_s: int


class MechanicCreated(msgspec.Struct, frozen=True):
    id: str
    name: str
    provider_type: str


class MechanicFound(msgspec.Struct, frozen=True):
    id: str
    name: str
    provider_type: str
    workshop_id: Annotated[str | None, msgspec.Meta(description="The workshop they work for, if any.")]


class MechanicsFound(msgspec.Struct, frozen=True):
    mechanics: list[MechanicFound]


class OnlineMechanic(msgspec.Struct, frozen=True):
    mechanic_id: str
    name: str


class OnlineMechanics(msgspec.Struct, frozen=True):
    mechanics: list[OnlineMechanic]


class KpiReport(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The favorites KPIs (docs/kpis.md); `requests` counts every request in the period."""

    requests: int


class CheckoutCreated(msgspec.Struct, frozen=True):
    checkout_session_id: str
    url: str


class WebhookReceived(msgspec.Struct, frozen=True):
    received: bool
    outcome: str
    request_id: str | None


class OfflineLag(msgspec.Struct, frozen=True):
    count: int
    p50_s: Annotated[float | None, msgspec.Meta(description="Upper bound of the histogram bucket; null: none yet.")]
    p99_s: float | None


class PresenceAccuracy(msgspec.Struct, frozen=True):
    """How right "online" is: docs/kpis.md says what each figure means and what to do when it drifts."""

    online: int
    expected_offline_lag_s: Annotated[
        list[float], msgspec.Meta(description="[PRESENCE_TTL_S, PRESENCE_TTL_S plus one sweep]: where lags belong.")
    ]
    offline_lag: Annotated[
        dict[str, OfflineLag],
        msgspec.Meta(description="From a device's last frame to its offline transition: `silent`, `expired`."),
    ]
    ghosts: Annotated[int, msgspec.Meta(description="Shown online with no heartbeat within the TTL, last check.")]
    flaps: Annotated[int, msgspec.Meta(description="Back online within a minute of going offline, since start.")]
    offers_to_offline: Annotated[
        int, msgspec.Meta(description="Priority offers that found no device of their mechanic, since start.")
    ]


class EstimateInterval(msgspec.Struct, frozen=True):
    value: float | None
    low: Annotated[float | None, msgspec.Meta(description="95% interval (Wilson for rates, normal for the mean).")]
    high: float | None


class WindowEstimate(msgspec.Struct, frozen=True):
    priority_window_s: float
    requests: int
    favorite_acceptance: EstimateInterval
    fallback: EstimateInterval
    time_to_start_minutes: Annotated[EstimateInterval, msgspec.Meta(description="The mean, with its interval.")]
    median_time_to_start_minutes: float | None
    beyond_the_log: Annotated[
        bool,
        msgspec.Meta(description="Longer than any window the log was served with: acceptance is a lower bound."),
    ]


class WhatIf(msgspec.Struct, frozen=True):
    current_priority_window_s: float
    windows: list[WindowEstimate]
    cannot_know: str
