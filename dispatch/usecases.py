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

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from base.clock import to_whole_ms, utc_now
from base.errors import (
    NotYourRequest,
    OfferUnavailable,
    RequestAlreadyOpen,
    RequestNotCancellable,
    RequestNotCompletable,
    RequestNotFound,
    WorkshopNotFound,
)
from base.ids import canonical_id
from delivery.close_codes import CloseCode
from dispatch import frames
from dispatch.acks import AckWriter
from dispatch.booking import BookingRules, NewRequest, PreparedRequest
from dispatch.changes import (
    ACCEPT,
    CANCEL,
    COMPLETE,
    CREATE_BROADCAST,
    CREATE_OFFERED,
    CREATE_WAITING,
    FALL_BACK,
    FALL_BACK_AT_DEADLINE,
    FALL_BACK_DECLINED,
    GIVE_BACK,
    KEYED,
    MARK_OFFERED,
    RESEND,
    Note,
)
from dispatch.config import DispatchConfig
from dispatch.deadlines import Deadline, DeadlineBoard
from dispatch.favorites import Favorites
from dispatch.idempotency import IdempotencyKey, IdempotencyKeys
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
    OfferAck,
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
from dispatch.owed import Owed
from dispatch.pushes import Pushes
from dispatch.requests import Requests, sr
from dispatch.rollout import Arm, arm_for
from dispatch.windows import Windows
from dispatch.workshops import Workshop, Workshops
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
        workshops: Workshops,
        favorites: Favorites,
        pushes: Pushes,
        rules: BookingRules,
        config: DispatchConfig,
        owed: Owed,
        idempotency: IdempotencyKeys,
    ) -> None:
        self.requests = requests
        self.windows = windows
        self._offers = offers
        self._presence = presence
        self._mechanics = mechanics
        self._workshops = workshops
        self._favorites = favorites
        self._pushes = pushes
        self._rules = rules
        self.config = config
        self._owed = owed
        self._idempotency = idempotency
        self._acks = AckWriter(requests)
        # Deadlines armed here and deadlines met here: the keeper schedules or drops them at once, from memory,
        # and tells the other processes (no database read per booking, no write at the deadline of an offer
        # already acked).
        self.board = DeadlineBoard()

    # Booking

    async def prepare(self, new: NewRequest, *, favorite_gone_means_broadcast: bool = False) -> PreparedRequest:
        """Validate and route a booking. A priority booking for a favorite who is offline right now (a modal
        that went stale) is a notify & wait: the customer is told so instead of waiting on someone absent."""
        prepared = await self._rules.prepare(new, favorite_gone_means_broadcast=favorite_gone_means_broadcast)
        if prepared.routing is Routing.PRIORITY and not await self._presence.any_online(prepared.audience):
            prepared = replace(
                prepared,
                routing=Routing.NOTIFY_AND_WAIT,
                notes=(*prepared.notes, "favorite offline at booking: notify and wait"),
            )
        return prepared

    def arm_of(self, customer_id: str) -> Arm:
        """The arm of the A/B rollout a customer's bookings are in (priority to a favorite, or broadcast only)."""
        return arm_for(customer_id, self.config.rollout_percent)

    async def book(self, new: NewRequest, key: IdempotencyKey | None = None) -> SessionRequest:
        """Create a request and start routing it: at most one open request per customer and favorite. With a
        `key`, the key is stored in the booking's own statement (one already stored makes it fail: see
        `booked_with`)."""
        prepared = await self.prepare(new)
        request = await self.insert(prepared, key=key)
        if request is None:  # the database refused a second open request for this favorite
            await self.refuse_second_open_request(prepared)
            raise RequestAlreadyOpen()  # the first one closed meanwhile: the customer may simply retry
        await self.start_routing(request)
        return request

    async def refuse_second_open_request(self, prepared: PreparedRequest) -> None:
        """RequestAlreadyOpen, naming it, when the customer already has an open request for this favorite."""
        if prepared.favorite_id is None:
            return
        already = await self.requests.open_for_favorite(prepared.customer_id, prepared.favorite_id)
        if already is not None:
            raise RequestAlreadyOpen(request_id=already.id)

    async def booked_with(self, key: IdempotencyKey) -> SessionRequest | None:
        """The booking this Idempotency-Key made (IdempotencyKeyReused when it came with another body)."""
        request_id = await self._idempotency.booking_of(key)
        return await self.requests.get(request_id) if request_id is not None else None

    async def insert(
        self,
        prepared: PreparedRequest,
        checkout_session_id: str | None = None,
        *,
        key: IdempotencyKey | None = None,
    ) -> SessionRequest | None:
        """Store a prepared request; None if one already exists for this Checkout Session, or (unpaid bookings)
        the customer already has an open request for this favorite.

        When the favorite is online the priority offer is marked sent in the same write, and its ack clock runs
        from there: if this process dies before sending, the missed ack resends it.
        """
        now = utc_now()
        routing = prepared.routing
        config = self.config
        window_s = config.notify_wait_window_s if routing is Routing.NOTIFY_AND_WAIT else config.priority_window_s
        is_priority = routing is not Routing.BROADCAST
        preferred = prepared.preferred
        offered_now = is_priority and await self._presence.any_online(prepared.audience)
        values: dict[str, Any] = {
            "customer_id": prepared.customer_id,
            "customer_name": prepared.customer_name,
            "session_type": prepared.session_type.value,
            "plan_code": prepared.plan_code,
            "status": Status.PENDING.value,
            "preferred_mechanic_id": preferred.id if preferred else None,
            "preferred_workshop_id": prepared.workshop.id if prepared.workshop else None,
            "routing_type": (RoutingType.PRIORITY_BROADCAST if is_priority else RoutingType.BROADCAST).value,
            "priority_window_minutes": round(window_s / 60) if is_priority else None,
            "created_at": now,
            "routing": routing.value,
            "provider_type": prepared.provider_type.value if prepared.provider_type else None,
            "phase": (Phase.PRIORITY if is_priority else Phase.BROADCAST).value,
            "priority_deadline": to_whole_ms(now + timedelta(seconds=window_s)) if is_priority else None,
            "arm": prepared.arm.value,
            "checkout_session_id": checkout_session_id,
            "priority_notified_at": now if offered_now else None,
            "ack_deadline": now + timedelta(seconds=config.offer_ack_timeout_s) if offered_now else None,
            "owed_at": now,
            "created_detail": "; ".join((f"routing={routing.value}", f"arm={prepared.arm.value}", *prepared.notes)),
        }
        change = CREATE_BROADCAST if not is_priority else CREATE_OFFERED if offered_now else CREATE_WAITING
        if key is not None:
            change = KEYED[change]
            values |= {"idempotency_key": key.key, "idempotency_fingerprint": key.fingerprint}
        return await self.requests.create(change, values)

    async def start_routing(self, request: SessionRequest) -> None:
        """Send a stored request's first offers and arm its window. Never fails the booking: what Redis does not
        take now is owed and re-delivered (`dispatch/owed.py`); the keeper closes the window from the database."""
        if request.phase is not Phase.PRIORITY:
            async with self._delivering(request):
                await self._broadcast(request, ())
            return
        self._arming(request)
        offered_in_the_insert = request.priority_notified_at is not None
        if offered_in_the_insert:
            # The offer before the window's key: the favorite is waiting for one, no one for the other.
            OFFERS_SENT.labels(kind=OfferKind.PRIORITY.value).inc()
            await self._offer_priority(request)
        if not await self.windows.arm(request):
            await self.fall_back(request.id, request.attempt, FallbackReason.WINDOW)
        elif not offered_in_the_insert:
            await self._offer_priority(request)

    async def _offer_priority(self, request: SessionRequest, *, repeat: bool = False) -> None:
        """The priority offer to its audience's sockets, or a push where no socket reaches them. A favorite who came
        online after the routing decision (possibly after their device's greeting read the database) is offered
        now: marking it sent is exactly-once."""
        audience = await self.audience(request)
        online = await self._presence.any_online(audience)
        if request.priority_notified_at is None and online:
            request = await self._mark_offered(request) or request
        async with self._delivering(request):
            if request.priority_notified_at is not None:
                await self._offers.priority(
                    request, to=audience, repeat=repeat, workshop_name=await self._workshop_named(request)
                )
            if not online:  # notify & wait, or gone offline before acking
                self._pushes.notify_later(request, audience)

    async def _workshop_named(self, request: SessionRequest) -> str | None:
        """The favorite workshop a request was booked with, by name, for its members' offers."""
        if request.preferred_workshop_id is None:
            return None
        return await self._workshops.name_of(request.preferred_workshop_id)

    async def redeliver(self, request: SessionRequest) -> None:
        """Publish again what a request's state owes the sockets: its publish failed or its process died first.
        Derived from the state alone, so it is right whatever happened since the change that marked it."""
        if request.status is Status.PENDING and request.phase is Phase.PRIORITY:
            if await self.windows.arm(request):
                await self._offer_priority(request)
            else:
                await self.fall_back(request.id, request.attempt, FallbackReason.WINDOW)
            return
        await self.windows.disarm(request.id)
        async with self._delivering(request):
            if request.status is Status.ACCEPTED and request.mechanic_id is not None:
                await self._offers.tell(request.mechanic_id, frames.Accepted(request_id=request.id))
                await self._offers.revoke(request.id, RevokeReason.TAKEN, but=request.mechanic_id)
            elif request.status is Status.CANCELLED:
                await self._offers.revoke(request.id, RevokeReason.CANCELLED)
            elif request.status is Status.PENDING:
                excluded = await self.requests.excluded(request.id)
                if excluded:  # a decline or give-back whose answer was lost: their devices drop the offer
                    await self._offers.revoke(request.id, RevokeReason.EXPIRED, to=excluded)
                await self._offers.broadcast(request, excluded)

    @asynccontextmanager
    async def _delivering(self, request: SessionRequest) -> AsyncIterator[None]:
        """Publish what a committed change owes. A failure is never the caller's: the change stands, and the
        delivery is retried from the request's state until Redis takes it."""
        try:
            yield
        except Exception as error:  # noqa: BLE001  (Redis away, a primary lost mid-publish: retried)
            log.warning("delivery for request %s failed (%r); retrying from its state", request.id, error)
            self._owed.failed(request)
        else:
            self._owed.delivered(request)

    async def rearm_windows(self) -> int:
        """Rebuild every open window key from the database (start-up, or Redis lost its keys); returns the count.
        Windows whose deadline passed meanwhile fall back now."""
        requests = await self.requests.open_priority()
        for request in requests:
            if not await self.windows.arm(request):
                await self.fall_back(request.id, request.attempt, FallbackReason.WINDOW)
        self.board.changed.set()
        return len(requests)

    # What the keeper drives (`dispatch.deadlines.Deadlines`)

    async def due_before(self, horizon: datetime, limit: int) -> list[Deadline]:
        return await self.requests.deadlines_before(horizon, limit)

    async def close_window(self, request_id: str, attempt: int) -> None:
        await self.fall_back(request_id, attempt, FallbackReason.WINDOW)

    def window_of(self, key: str) -> tuple[str, int] | None:
        return self.windows.keys.parse_window(key)

    async def audience(self, request: SessionRequest) -> tuple[str, ...]:
        """Whom a request's priority offer is for: its favorite mechanic, or every member of its favorite
        workshop (none once the workshop is gone)."""
        if request.preferred_workshop_id is not None:
            try:
                return (await self._workshops.get(request.preferred_workshop_id)).member_ids
            except WorkshopNotFound:
                return ()
        return (request.preferred_mechanic_id,) if request.preferred_mechanic_id else ()

    # A device connects

    async def greet(self, mechanic_id: str) -> list[Greeting]:
        """Everything a device that just connected must know: the sessions assigned to its mechanic, the priority
        offers waiting for them (marked sent now if they were not) and the open broadcasts.

        The device is registered before this runs, so an offer published meanwhile is not missed; its topics make
        sure it is not received twice either.
        """
        greetings = [Greeting(assigned_frame(r)) for r in await self.requests.assigned_to(mechanic_id, GREETING_LIMIT)]
        workshop_id = await self._mechanics.workshop_of(mechanic_id)
        for request in await self.requests.offerable_to(mechanic_id, workshop_id, GREETING_LIMIT):
            if request.phase is Phase.PRIORITY:
                if request.priority_notified_at is None:
                    if marked := await self._mark_offered(request):
                        self._owed.delivered(marked)  # this greeting is its delivery
                        request = marked
                    elif not await self._still_priority(request):
                        continue  # it fell back since it was read: its broadcast reaches this device, registered
                frame = offer_frame(request, OfferKind.PRIORITY, await self._workshop_named(request))
            else:
                frame = offer_frame(request, OfferKind.BROADCAST)
            greetings.append(Greeting(frame, topic=request.id, version=request.attempt))
        return greetings

    async def _still_priority(self, request: SessionRequest) -> bool:
        """Whether a request whose mark as offered was refused is still in that priority phase: another process
        marked it first (its offer stands), or it left the phase (an offer at that attempt would be stale)."""
        now = await self.requests.get(request.id)
        return now.phase is Phase.PRIORITY and now.attempt == request.attempt and now.status is Status.PENDING

    async def converge(self, mechanic_id: str, held: Iterable[str]) -> list[Greeting]:
        """What a connected device that may have missed frames is sent (pub/sub was away, its presence lapsed):
        its greeting, and an `offer_revoked` for each offer it holds (`held`) that it can no longer take. A
        session it won is in the greeting (`assigned`); an offer still open is in it at its current attempt."""
        greetings = await self.greet(mechanic_id)
        offered = {greeting.topic for greeting in greetings}
        gone = [request_id for request_id in held if request_id not in offered]
        for request in await self.requests.many(gone):
            if request.status is Status.ACCEPTED and request.mechanic_id == mechanic_id:
                continue
            reason = {Status.ACCEPTED: RevokeReason.TAKEN, Status.CANCELLED: RevokeReason.CANCELLED}.get(
                request.status, RevokeReason.EXPIRED
            )
            revoked = frames.OfferRevoked(request_id=request.id, reason=reason.value)
            greetings.append(Greeting(revoked, releases=request.id))
        return greetings

    async def _mark_offered(self, request: SessionRequest) -> SessionRequest | None:
        """Record the first delivery of the priority offer and start its ack clock (the first caller wins)."""
        now = utc_now()
        changed = await self.requests.commit(
            MARK_OFFERED,
            {
                "request_id": request.id,
                "attempt": request.attempt,
                "now": now,
                "next_ack_deadline": now + timedelta(seconds=self.config.offer_ack_timeout_s),
            },
        )
        if changed is not None:
            OFFERS_SENT.labels(kind=OfferKind.PRIORITY.value).inc()
            self._arming(changed)
        return changed

    def _arming(self, request: SessionRequest) -> None:
        """Hand the keeper this request's window and ack deadlines as they now stand."""
        if request.priority_deadline is not None:
            self.board.arm(Deadline("window", request.id, request.attempt, 0, request.priority_deadline.timestamp()))
        if request.ack_deadline is not None and request.offer_acked_at is None:
            due = request.ack_deadline.timestamp()
            self.board.arm(Deadline("ack", request.id, request.attempt, request.offer_resends, due))

    def _meeting(self, request_id: str, attempt: int, *kinds: str) -> None:
        """Tell the keeper these deadlines of this attempt no longer need a timer."""
        self.board.meet(request_id, attempt, *kinds)

    # Offers answered

    async def ack(self, mechanic_id: str, offer: str) -> None:
        """A device confirms it received an offer; for the priority offer this stops the resends."""
        OFFER_ACKS.inc()
        parsed = parse_offer_id(offer)
        if parsed is None or (canonical := canonical_id(parsed[0])) is None:
            raise OfferUnavailable("Unknown offer_id.")
        _, attempt, kind = parsed
        if kind is not OfferKind.PRIORITY:
            return
        workshop_id = await self._mechanics.workshop_of(mechanic_id)
        if await self._acks.write(OfferAck(canonical, attempt, mechanic_id, workshop_id)):
            self._meeting(canonical, attempt, "ack")

    async def resend_or_fall_back(self, request_id: str, attempt: int) -> None:
        """The priority offer's ack is overdue: resend it, or after `offer_resends` resends fall back."""
        now = utc_now()
        resent = await self.requests.commit(
            RESEND,
            {
                "request_id": request_id,
                "attempt": attempt,
                "now": now,
                "max_resends": self.config.offer_resends,
                "next_ack_deadline": now + timedelta(seconds=self.config.offer_ack_timeout_s),
            },
        )
        if resent is not None:
            self._arming(resent)
            OFFER_RESENDS.inc()
            await self._offer_priority(resent, repeat=True)
        elif await self.requests.is_overdue(request_id, attempt, now):
            await self.fall_back(request_id, attempt, FallbackReason.MISSED_ACKS)

    async def accept(
        self, mechanic_id: str, request_id: str, attempt: int, *, via: str | None = None
    ) -> SessionRequest:
        """First accept wins, across every process; the favorite's booking count rises in the same commit.

        `via`: the connection the accept came on, which its caller answers itself (the answer must not wait on
        Redis); the mechanic's other devices are told `accepted`."""
        if canonical_id(request_id) is None:
            raise OfferUnavailable(request_id=request_id)
        workshop_id = await self._mechanics.workshop_of(mechanic_id)
        values = {"request_id": request_id, "attempt": attempt, "mechanic": mechanic_id, "workshop": workshop_id}
        request = await self.requests.commit(ACCEPT, {**values, "now": utc_now()})
        if request is None:
            raise OfferUnavailable(request_id=request_id)
        ACCEPTS.labels(routing_type=request.routing_type).inc()
        if request.accepted_at is not None:
            TIME_TO_ACCEPT.labels(routing_type=request.routing_type).observe(
                (request.accepted_at - request.created_at).total_seconds()
            )
        if request.priority_deadline is not None:
            self._meeting(request_id, attempt, "window", "ack")
        await self.windows.disarm(request_id)
        async with self._delivering(request):
            await self._offers.tell(mechanic_id, frames.Accepted(request_id=request_id), skip=via)
            await self._offers.revoke(request_id, RevokeReason.TAKEN, but=mechanic_id)
        return request

    async def decline(self, mechanic_id: str, request_id: str, *, via: str | None = None) -> None:
        """Never offered again to this mechanic. A favorite's decline falls back to broadcast at once; a workshop
        member's declines only for them, until every member has declined. `via`: as for `accept`."""
        request = await self._offered_to(mechanic_id, request_id)
        if request.phase is Phase.PRIORITY and request.preferred_workshop_id is None:
            if not await self.fall_back(request_id, request.attempt, FallbackReason.DECLINED, by=mechanic_id):
                raise OfferUnavailable(request_id=request_id)
        else:
            declined = Note(EventKind.DECLINED, mechanic_id, request.attempt)
            await self.requests.exclude(request_id, mechanic_id, "declined", declined)
            if request.phase is Phase.PRIORITY:
                remaining = set(await self.audience(request)) - set(await self.requests.excluded(request_id))
                if not remaining:
                    await self.fall_back(request_id, request.attempt, FallbackReason.DECLINED)
        await self._tell_other_devices(mechanic_id, frames.Declined(request_id=request_id), request_id, via)

    async def _tell_other_devices(
        self, mechanic_id: str, frame: frames.ServerFrame, request_id: str, via: str | None
    ) -> None:
        """The answer to a decline or give-back for the mechanic's other devices that hold the offer: a courtesy
        (the change itself is delivered as owed, and a device that misses this drops the offer on its next
        greeting), so Redis being away is logged, not retried."""
        try:
            await self._offers.tell(mechanic_id, frame, releasing=request_id, skip=via)
        except Exception as error:  # noqa: BLE001
            log.warning("could not tell %s's other devices of %s (%r)", mechanic_id, request_id, error)

    async def _offered_to(self, mechanic_id: str, request_id: str) -> SessionRequest:
        try:
            request = await self.requests.get(request_id)
        except RequestNotFound:
            raise OfferUnavailable(request_id=request_id) from None
        eligible = request.phase is Phase.BROADCAST or request.preferred_mechanic_id == mechanic_id
        if not eligible and request.preferred_workshop_id is not None:
            eligible = request.preferred_workshop_id == await self._mechanics.workshop_of(mechanic_id)
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
        by: str | None = None,
    ) -> bool:
        """Leave the priority phase and broadcast. Exactly once across processes; True for the caller that did it.
        A favorite mechanic's decline names them (`by`): it is logged, and never offered to them again."""
        now = utc_now()
        if reason is FallbackReason.WINDOW:
            change = FALL_BACK_AT_DEADLINE
        elif by is not None:
            change = FALL_BACK_DECLINED
        else:
            change = FALL_BACK
        values = {"request_id": request_id, "attempt": attempt, "now": now, "reason": reason.value, "mechanic": by}
        request = await self.requests.commit(change, values)
        if request is None:
            return False
        FALLBACKS.labels(reason=reason.value).inc()
        if reason is FallbackReason.WINDOW and request.priority_deadline is not None:
            FALLBACK_LATENESS.observe((now - request.priority_deadline).total_seconds())
        self._meeting(request_id, attempt, "window", "ack")
        # Whose devices hold the priority offer and are told it expired: nobody's when it was never sent (it is
        # marked sent before any device gets it: a notify & wait that lapsed unseen), nor after a decline, whose
        # answer told them.
        offered = reason is not FallbackReason.DECLINED and request.priority_notified_at is not None
        audience = await self.audience(request) if offered else ()
        async with self._delivering(request):
            if audience:
                await self._offers.revoke(request_id, RevokeReason.EXPIRED, to=audience)
            await self._broadcast(request, await self._excluded_after_priority(request, by))
        # After the broadcast, which waits for nothing else: a window key left a moment longer expires into a
        # fallback the database refuses.
        await self.windows.disarm(request_id, attempt)
        return True

    async def _excluded_after_priority(self, request: SessionRequest, declined_by: str | None) -> tuple[str, ...]:
        """Whom a request that just left its priority phase must not be offered to. For one favorite that is only
        who declined in the change itself: exclusions come from declines and give-backs, a favorite's decline ends
        the phase, and no request comes back to it. A workshop's members decline one by one: those are read."""
        if request.preferred_workshop_id is not None:
            return await self.requests.excluded(request.id)
        return (declined_by,) if declined_by is not None else ()

    async def _broadcast(self, request: SessionRequest, excluded: tuple[str, ...]) -> None:
        OFFERS_SENT.labels(kind=OfferKind.BROADCAST.value).inc()
        await self._offers.broadcast(request, excluded)

    async def give_back(
        self,
        mechanic_id: str,
        request_id: str,
        detail: str | None,
        why: FallbackReason = FallbackReason.MECHANIC_CANCELLED,
        *,
        via: str | None = None,
    ) -> None:
        """The assigned mechanic cancels: the request is pending again and broadcast to everyone but them.
        `via`: as for `accept`."""
        if canonical_id(request_id) is None:
            raise NotYourRequest(request_id=request_id)
        request = await self.requests.commit(
            GIVE_BACK,
            {
                "request_id": request_id,
                "mechanic": mechanic_id,
                "now": utc_now(),
                "reason": why.value,
                "detail": detail,
            },
        )
        if request is None:
            raise NotYourRequest(request_id=request_id)
        FALLBACKS.labels(reason=why.value).inc()
        if why is FallbackReason.MECHANIC_CANCELLED:
            await self._tell_other_devices(mechanic_id, frames.GivenBack(request_id=request_id), request_id, via)
        async with self._delivering(request):
            await self._broadcast(request, await self.requests.excluded(request.id))

    # The customer and the mechanic close a request

    async def cancel(self, customer_id: str, request_id: str) -> SessionRequest:
        """The customer cancels: every outstanding offer is revoked, an assigned mechanic is told."""
        found = await self._owned_by(customer_id, request_id)
        request = await self.requests.commit(CANCEL, {"request_id": found.id, "now": utc_now()})
        if request is None:
            raise RequestNotCancellable()
        if request.priority_deadline is not None:
            self._meeting(request.id, request.attempt, "window", "ack")
        await self.windows.disarm(request.id)
        async with self._delivering(request):
            await self._offers.revoke(request.id, RevokeReason.CANCELLED)
        return request

    async def complete(self, mechanic_id: str, request_id: str) -> SessionRequest:
        """The assigned mechanic ends the session."""
        found = await self.requests.get(request_id)
        if found.mechanic_id != mechanic_id:
            raise NotYourRequest(request_id=found.id)
        request = await self.requests.commit(
            COMPLETE, {"request_id": found.id, "mechanic": mechanic_id, "now": utc_now()}
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
        await self._favorites.forget(mechanic.id)
        if mechanic.workshop_id is not None:
            await self._workshops.member_left(mechanic.workshop_id)
            await self._fall_back_if_empty(mechanic.workshop_id)
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

    # Workshops change

    async def add_member(self, workshop_id: str, mechanic_id: str) -> Workshop:
        """A mechanic joins a workshop, and is offered its open priority requests at once, as a member who just
        connected would be."""
        workshop = await self._workshops.add_member(workshop_id, mechanic_id)
        member = (await self._mechanics.get(mechanic_id)).id
        for request in await self.requests.open_priority_for_workshop(workshop.id):
            if request.priority_notified_at is None:
                if not self._presence.is_online(member):
                    continue
                request = await self._mark_offered(request) or request
            await self._offers.priority(request, to=(member,), workshop_name=workshop.name)
        return workshop

    async def remove_member(self, workshop_id: str, mechanic_id: str) -> Workshop:
        """A mechanic leaves a workshop; a workshop left with no members is a favorite gone."""
        workshop = await self._workshops.remove_member(workshop_id, mechanic_id)
        await self._fall_back_if_empty(workshop.id)
        return workshop

    async def forget_workshop(self, workshop_id: str) -> Workshop:
        """Delete a workshop: favorites forget it and its priority requests fall back at once."""
        workshop = await self._workshops.delete(workshop_id)
        await self._favorites.forget(workshop.id)
        await self._fall_back_workshop_requests(workshop.id)
        return workshop

    async def _fall_back_if_empty(self, workshop_id: str) -> None:
        try:
            if (await self._workshops.get(workshop_id)).member_ids:
                return
        except WorkshopNotFound:
            pass
        await self._fall_back_workshop_requests(workshop_id)

    async def _fall_back_workshop_requests(self, workshop_id: str) -> None:
        priority = await self.requests.ids_where(
            sr.c.status == Status.PENDING.value,
            sr.c.phase == Phase.PRIORITY.value,
            sr.c.preferred_workshop_id == workshop_id,
        )
        for request_id, attempt in priority:
            await self.fall_back(request_id, attempt, FallbackReason.WORKSHOP_GONE)
