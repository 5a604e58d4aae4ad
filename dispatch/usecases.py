"""Every change a booking goes through, one use case each: the one path from an adapter to the database.

An adapter (HTTP route, socket frame, webhook, deadline keeper) calls a use case with ids and attempts; the use
case makes one transition (`Requests.transition`: the row, its events and its counters in one transaction) and
then notifies devices. The database decides every race: whoever's transition returns the row announces it.
Notifying after the commit may be cut short by a crash; nothing is lost by that, because devices are told their
state again on every connect (`greet`) and the keeper closes every window from the database.

An offer carries its request's `attempt`, which rises with every change of phase, so that an accept meant for an
earlier phase is refused.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ClauseElement

from base.clock import utc_now
from base.errors import (
    NotYourRequest,
    OfferUnavailable,
    RequestAlreadyOpen,
    RequestNotCancellable,
    RequestNotCompletable,
    RequestNotFound,
)
from base.ids import canonical_id
from delivery.close_codes import CloseCode
from dispatch import frames
from dispatch.booking import BookingRules, NewRequest, PreparedRequest
from dispatch.config import DispatchConfig
from dispatch.favorites import Favorites
from dispatch.mechanics import Mechanics
from dispatch.metrics import (
    ACCEPTS,
    FALLBACK_LATENESS,
    FALLBACKS,
    OFFER_ACKS,
    OFFER_RESENDS,
    OFFERS_SENT,
    TIME_TO_ACCEPT,
)
from dispatch.models import (
    EventKind,
    FallbackReason,
    OfferKind,
    Phase,
    RevokeReason,
    Routing,
    RoutingType,
    SessionRequest,
    Status,
    parse_offer_id,
)
from dispatch.offers import Greeting, Offers, assigned_frame, offer_frame
from dispatch.requests import Note, Requests, sr
from dispatch.tables import request_exclusions
from dispatch.windows import Windows
from presence.tracker import PresenceTracker

log = logging.getLogger(__name__)

GREETING_LIMIT = 100  # offers and sessions handed to a device when it connects


class Dispatcher:
    def __init__(
        self,
        *,
        requests: Requests,
        windows: Windows,
        offers: Offers,
        presence: PresenceTracker,
        mechanics: Mechanics,
        favorites: Favorites,
        rules: BookingRules,
        config: DispatchConfig,
    ) -> None:
        self.requests = requests
        self.windows = windows
        self._offers = offers
        self._presence = presence
        self._mechanics = mechanics
        self._favorites = favorites
        self._rules = rules
        self.config = config
        # Set whenever a deadline is armed here, so the keeper schedules it without waiting.
        self.deadlines_changed = asyncio.Event()

    # Booking

    async def prepare(self, new: NewRequest, *, favorite_gone_means_broadcast: bool = False) -> PreparedRequest:
        """Validate and route a booking. A priority booking for a favorite who is offline right now (a modal
        that went stale) is a notify & wait: the customer is told so instead of waiting on someone absent."""
        prepared = await self._rules.prepare(new, favorite_gone_means_broadcast=favorite_gone_means_broadcast)
        preferred = prepared.preferred
        if prepared.routing is Routing.PRIORITY and preferred and not self._presence.is_online(preferred.id):
            prepared = replace(
                prepared,
                routing=Routing.NOTIFY_AND_WAIT,
                notes=(*prepared.notes, "favorite offline at booking: notify and wait"),
            )
        return prepared

    async def book(self, new: NewRequest) -> SessionRequest:
        """Create a request and start routing it: at most one open request per customer and favorite."""
        prepared = await self.prepare(new)
        request = await self.insert(prepared)
        if request is None:  # the database refused a second open request for this favorite
            await self.refuse_second_open_request(prepared)
            raise RequestAlreadyOpen()  # the first one closed meanwhile: the customer may simply retry
        await self.start_routing(request)
        return request

    async def refuse_second_open_request(self, prepared: PreparedRequest) -> None:
        """RequestAlreadyOpen, naming it, when the customer already has an open request for this favorite."""
        if prepared.preferred is None:
            return
        already = await self.requests.open_for_favorite(prepared.customer_id, prepared.preferred.id)
        if already is not None:
            raise RequestAlreadyOpen(request_id=already.id)

    async def insert(self, prepared: PreparedRequest, checkout_session_id: str | None = None) -> SessionRequest | None:
        """Store a prepared request; None if one already exists for this Checkout Session.

        When the favorite is online the priority offer is marked sent in the same write, and its ack clock runs
        from there: if this process dies before sending, the missed ack resends it.
        """
        now = utc_now()
        routing = prepared.routing
        config = self.config
        window_s = config.notify_wait_window_s if routing is Routing.NOTIFY_AND_WAIT else config.priority_window_s
        is_priority = routing is not Routing.BROADCAST
        preferred = prepared.preferred
        offered_now = is_priority and preferred is not None and self._presence.is_online(preferred.id)
        values: dict[str, Any] = {
            "customer_id": prepared.customer_id,
            "customer_name": prepared.customer_name,
            "session_type": prepared.session_type.value,
            "plan_code": prepared.plan_code,
            "status": Status.PENDING.value,
            "preferred_mechanic_id": preferred.id if preferred else None,
            "routing_type": (RoutingType.PRIORITY_BROADCAST if is_priority else RoutingType.BROADCAST).value,
            "priority_window_minutes": round(window_s / 60) if is_priority else None,
            "created_at": now,
            "routing": routing.value,
            "provider_type": prepared.provider_type.value if prepared.provider_type else None,
            "phase": (Phase.PRIORITY if is_priority else Phase.BROADCAST).value,
            "priority_deadline": now + timedelta(seconds=window_s) if is_priority else None,
            "arm": prepared.arm.value,
            "checkout_session_id": checkout_session_id,
        }
        if offered_now:
            values["priority_notified_at"] = now
            values["ack_deadline"] = now + timedelta(seconds=config.offer_ack_timeout_s)

        def notes(request: SessionRequest) -> list[Note]:
            detail = "; ".join((f"routing={routing.value}", f"arm={prepared.arm.value}", *prepared.notes))
            created = [Note(EventKind.CREATED, detail=detail)]
            if offered_now:
                created.append(Note(EventKind.OFFERED, request.preferred_mechanic_id, request.attempt, "priority"))
            if not is_priority:
                created.append(Note(EventKind.BROADCAST, attempt=request.attempt))
            return created

        return await self.requests.insert(values, notes)

    async def start_routing(self, request: SessionRequest) -> None:
        """Send a stored request's first offers and arm its window. Safe to skip if the process dies first: the
        keeper closes the window from the database, and devices that connect are greeted with open offers."""
        if request.phase is Phase.PRIORITY:
            self.deadlines_changed.set()
            if not await self.windows.arm(request):
                await self.fall_back(request.id, request.attempt, FallbackReason.WINDOW)
                return
            if request.priority_notified_at is not None:
                OFFERS_SENT.labels(kind=OfferKind.PRIORITY.value).inc()
                await self._offers.priority(request)
            elif request.preferred_mechanic_id and self._presence.is_online(request.preferred_mechanic_id):
                # The favorite came online between the routing decision and the insert, possibly after their
                # device's greeting read the database: offer now (marking it sent is exactly-once).
                offered = await self._mark_offered(request)
                if offered is not None:
                    await self._offers.priority(offered)
        else:
            OFFERS_SENT.labels(kind=OfferKind.BROADCAST.value).inc()
            await self._offers.broadcast(request, ())

    async def rearm_windows(self) -> int:
        """Rebuild every open window key from the database (start-up, or Redis lost its keys); returns the count.
        Windows whose deadline passed meanwhile fall back now."""
        requests = await self.requests.open_priority()
        for request in requests:
            if not await self.windows.arm(request):
                await self.fall_back(request.id, request.attempt, FallbackReason.WINDOW)
        self.deadlines_changed.set()
        return len(requests)

    # A device connects

    async def greet(self, mechanic_id: str) -> list[Greeting]:
        """Everything a device that just connected must know: the sessions assigned to its mechanic, the priority
        offers waiting for them (marked sent now if they were not) and the open broadcasts.

        The device is registered before this runs, so an offer published meanwhile is not missed; its topics make
        sure it is not received twice either.
        """
        greetings = [Greeting(assigned_frame(r)) for r in await self.requests.assigned_to(mechanic_id, GREETING_LIMIT)]
        for request in await self.requests.offerable_to(mechanic_id, GREETING_LIMIT):
            if request.phase is Phase.PRIORITY:
                if request.priority_notified_at is None:
                    request = await self._mark_offered(request) or request
                kind = OfferKind.PRIORITY
            else:
                kind = OfferKind.BROADCAST
            greetings.append(Greeting(offer_frame(request, kind), topic=request.id, version=request.attempt))
        return greetings

    async def _mark_offered(self, request: SessionRequest) -> SessionRequest | None:
        """Record the first delivery of the priority offer and start its ack clock (the first caller wins)."""
        now = utc_now()
        changed = await self.requests.transition(
            request.id,
            (
                sr.c.attempt == request.attempt,
                sr.c.status == Status.PENDING.value,
                sr.c.phase == Phase.PRIORITY.value,
                sr.c.priority_notified_at.is_(None),
            ),
            {"priority_notified_at": now, "ack_deadline": now + timedelta(seconds=self.config.offer_ack_timeout_s)},
            lambda r: [Note(EventKind.OFFERED, r.preferred_mechanic_id, r.attempt, "priority")],
        )
        if changed is not None:
            OFFERS_SENT.labels(kind=OfferKind.PRIORITY.value).inc()
            self.deadlines_changed.set()
        return changed

    # Offers answered

    async def ack(self, mechanic_id: str, offer: str) -> None:
        """A device confirms it received an offer; for the priority offer this stops the resends."""
        OFFER_ACKS.inc()
        parsed = parse_offer_id(offer)
        if parsed is None or canonical_id(parsed[0]) is None:
            raise OfferUnavailable("Unknown offer_id.")
        request_id, attempt, kind = parsed
        if kind is not OfferKind.PRIORITY:
            return
        await self.requests.transition(
            request_id,
            (
                sr.c.attempt == attempt,
                sr.c.status == Status.PENDING.value,
                sr.c.phase == Phase.PRIORITY.value,
                sr.c.preferred_mechanic_id == mechanic_id,
                sr.c.offer_acked_at.is_(None),
            ),
            {"offer_acked_at": utc_now(), "ack_deadline": None},
            lambda r: [Note(EventKind.ACKED, mechanic_id, attempt)],
        )

    async def resend_or_fall_back(self, request_id: str, attempt: int) -> None:
        """The priority offer's ack is overdue: resend it, or after `offer_resends` resends fall back."""
        now = utc_now()
        overdue = (
            sr.c.attempt == attempt,
            sr.c.status == Status.PENDING.value,
            sr.c.phase == Phase.PRIORITY.value,
            sr.c.offer_acked_at.is_(None),
            sr.c.ack_deadline <= now,
        )
        resent = await self.requests.transition(
            request_id,
            (*overdue, sr.c.offer_resends < self.config.offer_resends),
            {
                "offer_resends": sr.c.offer_resends + 1,
                "ack_deadline": now + timedelta(seconds=self.config.offer_ack_timeout_s),
            },
            lambda r: [Note(EventKind.RESENT, r.preferred_mechanic_id, attempt, f"resend {r.offer_resends}")],
        )
        if resent is not None:
            self.deadlines_changed.set()
            OFFER_RESENDS.inc()
            await self._offers.priority(resent, repeat=True)
        elif await self.requests.exists_where(sr.c.id == request_id, *overdue):
            await self.fall_back(request_id, attempt, FallbackReason.MISSED_ACKS)

    async def accept(self, mechanic_id: str, request_id: str, attempt: int) -> SessionRequest:
        """First accept wins, across every process; the favorite's booking count rises in the same commit."""
        if canonical_id(request_id) is None:
            raise OfferUnavailable(request_id=request_id)
        excluded = sa.select(request_exclusions.c.request_id).where(
            request_exclusions.c.request_id == request_id, request_exclusions.c.mechanic_id == mechanic_id
        )
        request = await self.requests.transition(
            request_id,
            (
                sr.c.attempt == attempt,
                sr.c.status == Status.PENDING.value,
                sa.or_(sr.c.phase == Phase.BROADCAST.value, sr.c.preferred_mechanic_id == mechanic_id),
                ~sa.exists(excluded),
            ),
            {
                "status": Status.ACCEPTED.value,
                "phase": None,
                "mechanic_id": mechanic_id,
                "accepted_at": utc_now(),
                "ack_deadline": None,
            },
            lambda r: [Note(EventKind.ACCEPTED, mechanic_id, attempt)],
            also=lambda r: [self._favorites.count_booking(r.customer_id, mechanic_id)],
        )
        if request is None:
            raise OfferUnavailable(request_id=request_id)
        ACCEPTS.labels(routing_type=request.routing_type).inc()
        if request.accepted_at is not None:
            TIME_TO_ACCEPT.labels(routing_type=request.routing_type).observe(
                (request.accepted_at - request.created_at).total_seconds()
            )
        await self.windows.close(request_id)
        await self._offers.tell(mechanic_id, frames.Accepted(request_id=request_id))
        await self._offers.revoke(request_id, RevokeReason.TAKEN, but=mechanic_id)
        return request

    async def decline(self, mechanic_id: str, request_id: str) -> None:
        """Never offered again to this mechanic; a favorite's decline falls back to broadcast at once."""
        request = await self._offered_to(mechanic_id, request_id)
        declined = Note(EventKind.DECLINED, mechanic_id, request.attempt)
        if request.phase is Phase.PRIORITY:
            exclusion = self.requests.exclusion(request_id, mechanic_id, "declined")
            if not await self.fall_back(
                request_id, request.attempt, FallbackReason.DECLINED, first=declined, also=[exclusion]
            ):
                raise OfferUnavailable(request_id=request_id)
        else:
            await self.requests.exclude(request_id, mechanic_id, "declined", declined)
        await self._offers.tell(mechanic_id, frames.Declined(request_id=request_id), releasing=request_id)

    async def _offered_to(self, mechanic_id: str, request_id: str) -> SessionRequest:
        try:
            request = await self.requests.get(request_id)
        except RequestNotFound:
            raise OfferUnavailable(request_id=request_id) from None
        eligible = request.phase is Phase.BROADCAST or request.preferred_mechanic_id == mechanic_id
        if request.status is not Status.PENDING or not eligible:
            raise OfferUnavailable(request_id=request.id)
        return request

    # Falling back to everyone

    async def fall_back(
        self,
        request_id: str,
        attempt: int,
        reason: FallbackReason,
        *,
        first: Note | None = None,
        also: list[ClauseElement] | None = None,
    ) -> bool:
        """Leave the priority phase and broadcast. Exactly once across processes; True for the caller that did it."""
        now = utc_now()
        when = [sr.c.attempt == attempt, sr.c.status == Status.PENDING.value, sr.c.phase == Phase.PRIORITY.value]
        if reason is FallbackReason.WINDOW:
            when.append(sr.c.priority_deadline <= now)
        request = await self.requests.transition(
            request_id,
            when,
            {
                "phase": Phase.BROADCAST.value,
                "attempt": sr.c.attempt + 1,
                "fallback_broadcast_at": now,
                "reroute_reason": reason.value,
                "ack_deadline": None,
            },
            lambda r: [
                *([first] if first else []),
                Note(EventKind.FELL_BACK, r.preferred_mechanic_id, r.attempt, reason.value),
                Note(EventKind.BROADCAST, attempt=r.attempt),
            ],
            also=(lambda r: also) if also else None,
        )
        if request is None:
            return False
        FALLBACKS.labels(reason=reason.value).inc()
        if reason is FallbackReason.WINDOW and request.priority_deadline is not None:
            FALLBACK_LATENESS.observe((now - request.priority_deadline).total_seconds())
        await self.windows.close(request_id, attempt)
        if request.preferred_mechanic_id is not None and reason is not FallbackReason.DECLINED:
            await self._offers.revoke(request_id, RevokeReason.EXPIRED, to=request.preferred_mechanic_id)
        await self._broadcast(request)
        return True

    async def _broadcast(self, request: SessionRequest) -> None:
        OFFERS_SENT.labels(kind=OfferKind.BROADCAST.value).inc()
        await self._offers.broadcast(request, await self.requests.excluded(request.id))

    async def give_back(
        self,
        mechanic_id: str,
        request_id: str,
        detail: str | None,
        why: FallbackReason = FallbackReason.MECHANIC_CANCELLED,
    ) -> None:
        """The assigned mechanic cancels: the request is pending again and broadcast to everyone but them."""
        if canonical_id(request_id) is None:
            raise NotYourRequest(request_id=request_id)
        now = utc_now()
        had_favorite = sr.c.routing_type == RoutingType.PRIORITY_BROADCAST.value
        request = await self.requests.transition(
            request_id,
            (sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic_id),
            {
                "status": Status.PENDING.value,
                "phase": Phase.BROADCAST.value,
                "attempt": sr.c.attempt + 1,
                "mechanic_id": None,
                "accepted_at": None,
                "reroute_reason": why.value,
                "fallback_broadcast_at": sa.case(
                    (sa.and_(had_favorite, sr.c.fallback_broadcast_at.is_(None)), now),
                    else_=sr.c.fallback_broadcast_at,
                ),
            },
            lambda r: [
                Note(EventKind.MECHANIC_CANCELLED, mechanic_id, r.attempt, detail),
                Note(EventKind.FELL_BACK, attempt=r.attempt, detail=why.value),
                Note(EventKind.BROADCAST, attempt=r.attempt),
            ],
            also=lambda r: [self.requests.exclusion(request_id, mechanic_id, "gave_back")],
        )
        if request is None:
            raise NotYourRequest(request_id=request_id)
        FALLBACKS.labels(reason=why.value).inc()
        if why is FallbackReason.MECHANIC_CANCELLED:
            await self._offers.tell(mechanic_id, frames.GivenBack(request_id=request_id), releasing=request_id)
        await self._broadcast(request)

    # The customer and the mechanic close a request

    async def cancel(self, customer_id: str, request_id: str) -> SessionRequest:
        """The customer cancels: every outstanding offer is revoked, an assigned mechanic is told."""
        found = await self._owned_by(customer_id, request_id)
        request = await self.requests.transition(
            found.id,
            (sr.c.status.in_([Status.PENDING.value, Status.ACCEPTED.value]),),
            {"status": Status.CANCELLED.value, "phase": None, "cancelled_at": utc_now(), "ack_deadline": None},
            lambda r: [Note(EventKind.CANCELLED, detail="by customer")],
        )
        if request is None:
            raise RequestNotCancellable()
        await self.windows.close(request.id)
        await self._offers.revoke(request.id, RevokeReason.CANCELLED)
        return request

    async def complete(self, mechanic_id: str, request_id: str) -> SessionRequest:
        """The assigned mechanic ends the session."""
        found = await self.requests.get(request_id)
        if found.mechanic_id != mechanic_id:
            raise NotYourRequest(request_id=found.id)
        request = await self.requests.transition(
            found.id,
            (sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic_id),
            {"status": Status.COMPLETED.value, "completed_at": utc_now()},
            lambda r: [Note(EventKind.COMPLETED, mechanic_id)],
        )
        if request is None:
            raise RequestNotCompletable()
        return request

    async def dismiss_favorite_prompt(self, customer_id: str, request_id: str) -> None:
        request = await self._owned_by(customer_id, request_id)
        await self.requests.dismiss_favorite_prompt(request.id)

    async def _owned_by(self, customer_id: str, request_id: str) -> SessionRequest:
        request = await self.requests.get(request_id)
        if request.customer_id != customer_id:
            raise RequestNotFound()
        return request

    # A mechanic leaves

    async def forget_mechanic(self, mechanic_id: str) -> None:
        """Delete a mechanic: their devices close with 4404, favorites forget them, their priority requests fall
        back at once and the sessions they had accepted go back to the broadcast."""
        mechanic = await self._mechanics.delete(mechanic_id)
        await self._favorites.forget_mechanic(mechanic.id)
        await self._presence.forget(mechanic.id)
        await self._offers.disconnect(mechanic.id, CloseCode.MECHANIC_NOT_FOUND)
        priority = await self.requests.ids_where(
            sr.c.status == Status.PENDING.value,
            sr.c.phase == Phase.PRIORITY.value,
            sr.c.preferred_mechanic_id == mechanic.id,
        )
        for request_id, attempt in priority:
            await self.fall_back(request_id, attempt, FallbackReason.MECHANIC_DELETED)
        accepted = await self.requests.ids_where(sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic.id)
        for request_id, _ in accepted:
            try:
                await self.give_back(mechanic.id, request_id, None, FallbackReason.MECHANIC_DELETED)
            except NotYourRequest:
                pass  # completed or cancelled meanwhile
