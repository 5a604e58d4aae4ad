"""Session requests: creation, priority offers, acks, the fallback to broadcast, accept, decline and cancel.

The database decides every race with a conditional `UPDATE … RETURNING`: whichever process's update returns the
row owns the transition and is the only one to announce it. Redis holds what can be rebuilt (window keys,
deliveries in flight). An offer is tagged with its request's `attempt`, which rises with every change of phase,
so that an accept meant for an earlier phase is refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import sqlalchemy as sa
from databases import Database
from redis.asyncio import Redis

from dispatch import protocol
from dispatch.booking import BookingRules, NewRequest, PreparedRequest
from dispatch.config import DispatchConfig
from dispatch.errors import (
    NotYourRequest,
    OfferUnavailable,
    RequestNotCancellable,
    RequestNotCompletable,
    RequestNotFound,
)
from dispatch.events import EventLog
from dispatch.favorites import Favorites
from dispatch.keys import DispatchKeys
from dispatch.mechanics import Mechanics, canonical_id
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
    PRIORITY_ATTEMPT,
    EventKind,
    FallbackReason,
    OfferKind,
    Phase,
    RevokeReason,
    Routing,
    RoutingType,
    SessionRequest,
    Status,
    offer_id,
    parse_offer_id,
)
from dispatch.plans import Plans
from dispatch.sql import insert_ignoring_conflict
from dispatch.tables import request_exclusions, session_requests
from presence.clock import iso, utc_now
from presence.hub import Connection, Envelope, Hub
from presence.tables import mechanics
from presence.tracker import PresenceTracker

log = logging.getLogger(__name__)

PENDING_OFFERS_ON_CONNECT = 100

sr = session_requests


class Dispatcher:
    def __init__(
        self,
        *,
        database: Database,
        redis: Redis,
        hub: Hub,
        presence: PresenceTracker,
        registry: Mechanics,
        favorites: Favorites,
        plans: Plans,
        config: DispatchConfig,
    ) -> None:
        self._db = database
        self._redis = redis
        self._hub = hub
        self._presence = presence
        self._registry = registry
        self._favorites = favorites
        self.rules = BookingRules(registry, plans, config.rollout_percent)
        self.config = config
        self.keys = DispatchKeys(config.key_prefix)
        self.events = EventLog(database)
        # Set whenever a deadline is armed here, so the keeper schedules it without waiting for its next poll.
        self.deadlines_changed = asyncio.Event()

    # Reading

    async def get(self, request_id: str) -> SessionRequest:
        canonical = canonical_id(request_id)
        row = None
        if canonical is not None:
            row = await self._db.fetch_one(sa.select(sr).where(sr.c.id == canonical))
        if row is None:
            raise RequestNotFound()
        return SessionRequest.from_row(row)

    async def open_requests(self, limit: int = 200) -> list[SessionRequest]:
        """Pending and accepted requests, newest first: what operations watches."""
        rows = await self._db.fetch_all(
            sa.select(sr)
            .where(sr.c.status.in_([Status.PENDING.value, Status.ACCEPTED.value]))
            .order_by(sr.c.created_at.desc())
            .limit(limit)
        )
        return [SessionRequest.from_row(row) for row in rows]

    # Creating

    async def prepare(self, new: NewRequest, *, favorite_gone_means_broadcast: bool = False) -> PreparedRequest:
        return await self.rules.prepare(new, favorite_gone_means_broadcast=favorite_gone_means_broadcast)

    async def insert(self, prepared: PreparedRequest, checkout_session_id: str | None = None) -> SessionRequest | None:
        """Store a prepared request; None if one already exists for this Checkout Session (the key decides)."""
        now = utc_now()
        routing = prepared.routing
        window_s = (
            self.config.notify_wait_window_s if routing is Routing.NOTIFY_AND_WAIT else self.config.priority_window_s
        )
        is_priority = routing is not Routing.BROADCAST
        preferred = prepared.preferred
        row = await self._db.fetch_one(
            insert_ignoring_conflict(self._db, sr)
            .values(
                id=str(uuid.uuid4()),
                customer_id=prepared.customer_id,
                customer_name=prepared.customer_name,
                session_type=prepared.session_type.value,
                plan_code=prepared.plan_code,
                status=Status.PENDING.value,
                preferred_mechanic_id=preferred.id if preferred else None,
                routing_type=(RoutingType.PRIORITY_BROADCAST if is_priority else RoutingType.BROADCAST).value,
                priority_window_minutes=round(window_s / 60) if is_priority else None,
                created_at=now,
                routing=routing.value,
                provider_type=prepared.provider_type.value if prepared.provider_type else None,
                phase=(Phase.PRIORITY if is_priority else Phase.BROADCAST).value,
                attempt=PRIORITY_ATTEMPT,
                priority_deadline=now + timedelta(seconds=window_s) if is_priority else None,
                arm=prepared.arm.value,
                checkout_session_id=checkout_session_id,
            )
            .returning(*sr.c)
        )
        if row is None:
            return None
        request = SessionRequest.from_row(row)
        detail = "; ".join((f"routing={routing.value}", f"arm={prepared.arm.value}", *prepared.notes))
        await self.events.record(request.id, EventKind.CREATED, detail=detail)
        return request

    async def start_routing(self, request: SessionRequest) -> None:
        """Offer a stored request: to the favorite first, or to everyone.

        Safe to skip if the process dies right before: the keeper still closes the window from the database,
        and mechanics who connect receive open requests.
        """
        if request.phase is Phase.PRIORITY:
            await self._arm_window(request)
            await self._offer_priority(request)
        else:
            await self._broadcast(request)

    async def create(self, new: NewRequest) -> SessionRequest:
        """Create a request and start routing it (payments use `prepare`, `insert` and `start_routing`)."""
        request = await self.insert(await self.prepare(new))
        assert request is not None  # no Checkout Session, so no conflict
        await self.start_routing(request)
        return await self.get(request.id)

    async def complete(self, mechanic_id: str, request_id: str) -> SessionRequest:
        """The assigned mechanic ends the session."""
        request = await self.get(request_id)
        if request.mechanic_id != mechanic_id:
            raise NotYourRequest(request_id=request.id)
        row = await self._db.fetch_one(
            sr.update()
            .where(sr.c.id == request.id, sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic_id)
            .values(status=Status.COMPLETED.value, completed_at=utc_now())
            .returning(*sr.c)
        )
        if row is None:
            raise RequestNotCompletable()
        await self.events.record(request.id, EventKind.COMPLETED, mechanic_id=mechanic_id)
        return SessionRequest.from_row(row)

    async def dismiss_favorite_prompt(self, customer_id: str, request_id: str) -> None:
        request = await self.get(request_id)
        if request.customer_id != customer_id:
            raise RequestNotFound()
        await self._db.execute(
            sr.update()
            .where(sr.c.id == request.id, sr.c.favorite_prompt_dismissed_at.is_(None))
            .values(favorite_prompt_dismissed_at=utc_now())
        )

    # Offers

    def _offer_envelope(
        self,
        request: SessionRequest,
        kind: OfferKind,
        *,
        to: tuple[str, ...] | None,
        exclude: tuple[str, ...] = (),
        resend: bool = False,
    ) -> Envelope:
        expires_at = iso(request.priority_deadline) if kind is OfferKind.PRIORITY else None
        frame = protocol.offer(
            offer_id=offer_id(request.id, request.attempt, kind),
            request_id=request.id,
            kind=kind.value,
            customer_name=request.customer_name or "A customer",
            session_type=request.session_type,
            expires_at=expires_at,
            attempt=request.attempt,
        )
        return Envelope(frame=frame, to=to, exclude=exclude, topic=request.id, attempt=request.attempt, resend=resend)

    async def _offer_priority(self, request: SessionRequest) -> None:
        """Send the priority offer to every device of the favorite, if any is connected now.

        A favorite who is offline gets it when a device connects (`deliver_pending`).
        """
        mechanic_id = request.preferred_mechanic_id
        assert mechanic_id is not None
        if not await self._presence.is_online(mechanic_id):
            return
        if await self._mark_notified(request):
            OFFERS_SENT.labels(kind=OfferKind.PRIORITY.value).inc()
            await self._hub.send(self._offer_envelope(request, OfferKind.PRIORITY, to=(mechanic_id,)))

    async def _mark_notified(self, request: SessionRequest) -> bool:
        """Record the first delivery of the priority offer and start its ack clock. True for the first caller."""
        now = utc_now()
        row = await self._db.fetch_one(
            sr.update()
            .where(
                sr.c.id == request.id,
                sr.c.attempt == request.attempt,
                sr.c.status == Status.PENDING.value,
                sr.c.phase == Phase.PRIORITY.value,
                sr.c.priority_notified_at.is_(None),
            )
            .values(priority_notified_at=now, ack_deadline=now + timedelta(seconds=self.config.offer_ack_timeout_s))
            .returning(sr.c.id)
        )
        if row is None:
            return False
        await self.events.record(
            request.id,
            EventKind.OFFERED,
            mechanic_id=request.preferred_mechanic_id,
            attempt=request.attempt,
            detail="priority",
        )
        self.deadlines_changed.set()
        return True

    async def _excluded(self, request_id: str) -> tuple[str, ...]:
        rows = await self._db.fetch_all(
            sa.select(request_exclusions.c.mechanic_id).where(request_exclusions.c.request_id == request_id)
        )
        return tuple(str(r["mechanic_id"]) for r in rows)

    async def _broadcast(self, request: SessionRequest) -> None:
        """Offer to every connected mechanic but those who declined or gave it back."""
        excluded = await self._excluded(request.id)
        await self.events.record(request.id, EventKind.BROADCAST, attempt=request.attempt)
        OFFERS_SENT.labels(kind=OfferKind.BROADCAST.value).inc()
        await self._hub.send(self._offer_envelope(request, OfferKind.BROADCAST, to=None, exclude=excluded))

    async def deliver_pending(self, connection: Connection) -> None:
        """A device just connected: hand it the priority offers waiting for its mechanic and the open broadcasts.

        The connection is registered before this runs, so an offer published meanwhile is not missed; the
        connection's topics make sure it is not received twice either.
        """
        mechanic_id = connection.mechanic_id
        excluded = sa.select(request_exclusions.c.request_id).where(request_exclusions.c.mechanic_id == mechanic_id)
        rows = await self._db.fetch_all(
            sa.select(sr)
            .where(
                sr.c.status == Status.PENDING.value,
                sa.or_(
                    sa.and_(sr.c.phase == Phase.PRIORITY.value, sr.c.preferred_mechanic_id == mechanic_id),
                    sr.c.phase == Phase.BROADCAST.value,
                ),
                sr.c.id.not_in(excluded),
            )
            .order_by(sr.c.created_at)
            .limit(PENDING_OFFERS_ON_CONNECT)
        )
        for request in map(SessionRequest.from_row, rows):
            if request.phase is Phase.PRIORITY:
                if request.priority_notified_at is None:
                    await self._mark_notified(request)
                connection.offer(self._offer_envelope(request, OfferKind.PRIORITY, to=(mechanic_id,)))
            else:
                connection.offer(self._offer_envelope(request, OfferKind.BROADCAST, to=None))

    async def ack(self, mechanic_id: str, offer: str) -> None:
        """A device confirms it received an offer; for the priority offer this stops the resends."""
        OFFER_ACKS.inc()
        parsed = parse_offer_id(offer)
        if parsed is None or canonical_id(parsed[0]) is None:
            raise OfferUnavailable("Unknown offer_id.")
        request_id, attempt, kind = parsed
        if kind is not OfferKind.PRIORITY:
            return
        row = await self._db.fetch_one(
            sr.update()
            .where(
                sr.c.id == request_id,
                sr.c.attempt == attempt,
                sr.c.status == Status.PENDING.value,
                sr.c.phase == Phase.PRIORITY.value,
                sr.c.preferred_mechanic_id == mechanic_id,
                sr.c.offer_acked_at.is_(None),
            )
            .values(offer_acked_at=utc_now(), ack_deadline=None)
            .returning(sr.c.id)
        )
        if row is not None:
            await self.events.record(request_id, EventKind.ACKED, mechanic_id=mechanic_id, attempt=attempt)

    async def resend_or_fall_back(self, request_id: str, attempt: int) -> None:
        """The priority offer's ack is overdue: resend it, or after `offer_resends` resends fall back."""
        now = utc_now()
        overdue = (
            sr.c.id == request_id,
            sr.c.attempt == attempt,
            sr.c.status == Status.PENDING.value,
            sr.c.phase == Phase.PRIORITY.value,
            sr.c.offer_acked_at.is_(None),
            sr.c.ack_deadline <= now,
        )
        row = await self._db.fetch_one(
            sr.update()
            .where(*overdue, sr.c.offer_resends < self.config.offer_resends)
            .values(
                offer_resends=sr.c.offer_resends + 1,
                ack_deadline=now + timedelta(seconds=self.config.offer_ack_timeout_s),
            )
            .returning(*sr.c)
        )
        if row is not None:
            request = SessionRequest.from_row(row)
            await self.events.record(
                request_id,
                EventKind.RESENT,
                mechanic_id=request.preferred_mechanic_id,
                attempt=attempt,
                detail=f"resend {row['offer_resends']}",
            )
            self.deadlines_changed.set()
            OFFER_RESENDS.inc()
            assert request.preferred_mechanic_id is not None
            await self._hub.send(
                self._offer_envelope(request, OfferKind.PRIORITY, to=(request.preferred_mechanic_id,), resend=True)
            )
            return
        still_overdue = await self._db.fetch_one(sa.select(sr.c.id).where(*overdue))
        if still_overdue is not None:
            await self.fall_back(request_id, attempt, FallbackReason.MISSED_ACKS)

    # The fallback

    async def _arm_window(self, request: SessionRequest) -> None:
        """Mark the priority window in Redis; its expiry event triggers the fallback (the keeper makes it punctual).

        A deadline already past is not armed (Redis would answer with a `del`, not `expired`): it falls back now.
        """
        assert request.priority_deadline is not None
        # Round up: a key that expired a millisecond early would find the window still open.
        deadline_ms = int(request.priority_deadline.timestamp() * 1000) + 1
        if request.priority_deadline <= utc_now():
            await self.fall_back(request.id, request.attempt, FallbackReason.WINDOW)
            return
        await self._redis.set(self.keys.window(request.id, request.attempt), "1", pxat=deadline_ms)
        self.deadlines_changed.set()

    async def touch_window(self, request_id: str, attempt: int) -> bool:
        """Look the window key up, which makes Redis expire it (and fire `expired`) if its time has come.

        True while the key still exists.
        """
        return bool(await self._redis.exists(self.keys.window(request_id, attempt)))

    async def rearm_windows(self) -> int:
        """Rebuild every open window key from the database (start-up, or Redis lost its keys); returns the count."""
        rows = await self._db.fetch_all(
            sa.select(sr).where(sr.c.status == Status.PENDING.value, sr.c.phase == Phase.PRIORITY.value)
        )
        for request in map(SessionRequest.from_row, rows):
            await self._arm_window(request)
        return len(rows)

    async def fall_back(self, request_id: str, attempt: int, reason: FallbackReason) -> bool:
        """Leave the priority phase and broadcast. Exactly once across processes; True for the caller that did it."""
        now = utc_now()
        conditions = [
            sr.c.id == request_id,
            sr.c.attempt == attempt,
            sr.c.status == Status.PENDING.value,
            sr.c.phase == Phase.PRIORITY.value,
        ]
        if reason is FallbackReason.WINDOW:
            conditions.append(sr.c.priority_deadline <= now)
        row = await self._db.fetch_one(
            sr.update()
            .where(*conditions)
            .values(
                phase=Phase.BROADCAST.value,
                attempt=sr.c.attempt + 1,
                fallback_broadcast_at=now,
                reroute_reason=reason.value,
                ack_deadline=None,
            )
            .returning(*sr.c)
        )
        if row is None:
            return False
        request = SessionRequest.from_row(row)
        FALLBACKS.labels(reason=reason.value).inc()
        if reason is FallbackReason.WINDOW and request.priority_deadline is not None:
            FALLBACK_LATENESS.observe((now - request.priority_deadline).total_seconds())
        await self.events.record(
            request_id,
            EventKind.FELL_BACK,
            mechanic_id=request.preferred_mechanic_id,
            attempt=request.attempt,
            detail=reason.value,
        )
        await self._redis.delete(self.keys.window(request_id, attempt))
        if request.preferred_mechanic_id is not None and reason is not FallbackReason.DECLINED:
            await self._hub.send(
                Envelope(
                    frame=protocol.offer_revoked(request_id, RevokeReason.EXPIRED.value),
                    to=(request.preferred_mechanic_id,),
                    holders_of=request_id,
                    release=True,
                )
            )
        await self._broadcast(request)
        return True

    # The mechanic's answers

    def _attempt_held(self, connection: Connection, request_id: str, attempt: int | None) -> int:
        if attempt is not None:
            return attempt
        held = connection.topics.get(request_id)
        if held is None:
            raise OfferUnavailable(request_id=request_id)
        return held

    async def accept(self, connection: Connection, request_id: str, attempt: int | None = None) -> SessionRequest:
        """First accept wins: the database's conditional update decides, across every process."""
        mechanic_id = connection.mechanic_id
        if canonical_id(request_id) is None:
            raise OfferUnavailable(request_id=request_id)
        attempt = self._attempt_held(connection, request_id, attempt)
        excluded = sa.select(request_exclusions.c.request_id).where(
            request_exclusions.c.request_id == request_id, request_exclusions.c.mechanic_id == mechanic_id
        )
        row = await self._db.fetch_one(
            sr.update()
            .where(
                sr.c.id == request_id,
                sr.c.attempt == attempt,
                sr.c.status == Status.PENDING.value,
                sa.or_(sr.c.phase == Phase.BROADCAST.value, sr.c.preferred_mechanic_id == mechanic_id),
                ~sa.exists(excluded),
            )
            .values(
                status=Status.ACCEPTED.value,
                phase=None,
                mechanic_id=mechanic_id,
                accepted_at=utc_now(),
                ack_deadline=None,
            )
            .returning(*sr.c)
        )
        if row is None:
            raise OfferUnavailable(request_id=request_id)
        request = SessionRequest.from_row(row)
        ACCEPTS.labels(routing_type=request.routing_type).inc()
        if request.accepted_at is not None:
            TIME_TO_ACCEPT.labels(routing_type=request.routing_type).observe(
                (request.accepted_at - request.created_at).total_seconds()
            )
        await self.events.record(request_id, EventKind.ACCEPTED, mechanic_id=mechanic_id, attempt=attempt)
        await self._redis.delete(self.keys.window(request_id, PRIORITY_ATTEMPT))
        await self._favorites.count_booking(request.customer_id, mechanic_id)
        await self._hub.send(Envelope(frame=protocol.accepted(request_id), to=(mechanic_id,)))
        await self._hub.send(
            Envelope(
                frame=protocol.offer_revoked(request_id, RevokeReason.TAKEN.value),
                exclude=(mechanic_id,),
                holders_of=request_id,
                release=True,
            )
        )
        return request

    async def _exclude(self, request_id: str, mechanic_id: str, reason: str) -> None:
        await self._db.execute(
            insert_ignoring_conflict(self._db, request_exclusions).values(
                request_id=request_id, mechanic_id=mechanic_id, reason=reason
            )
        )

    async def decline(self, connection: Connection, request_id: str) -> None:
        """Never offered again to this mechanic; a favorite's decline falls back to broadcast at once."""
        mechanic_id = connection.mechanic_id
        if request_id not in connection.topics:
            raise OfferUnavailable(request_id=request_id)
        request = await self.get(request_id)
        if request.status is not Status.PENDING:
            raise OfferUnavailable(request_id=request_id)
        await self._exclude(request_id, mechanic_id, "declined")
        await self._hub.send(
            Envelope(frame=protocol.ok("declined", request_id), to=(mechanic_id,), holders_of=request_id, release=True)
        )
        await self.events.record(request_id, EventKind.DECLINED, mechanic_id=mechanic_id, attempt=request.attempt)
        if request.phase is Phase.PRIORITY and request.preferred_mechanic_id == mechanic_id:
            await self.fall_back(request_id, request.attempt, FallbackReason.DECLINED)

    async def give_back(self, mechanic_id: str, request_id: str, reason: str | None) -> None:
        """The assigned mechanic cancels: the request is pending again and broadcast to everyone but them."""
        if canonical_id(request_id) is None:
            raise NotYourRequest(request_id=request_id)
        if not await self._return_to_broadcast(request_id, mechanic_id, FallbackReason.MECHANIC_CANCELLED, reason):
            raise NotYourRequest(request_id=request_id)

    async def _return_to_broadcast(
        self, request_id: str, mechanic_id: str, why: FallbackReason, detail: str | None
    ) -> bool:
        now = utc_now()
        had_favorite = sr.c.routing_type == RoutingType.PRIORITY_BROADCAST.value
        row = await self._db.fetch_one(
            sr.update()
            .where(sr.c.id == request_id, sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic_id)
            .values(
                status=Status.PENDING.value,
                phase=Phase.BROADCAST.value,
                attempt=sr.c.attempt + 1,
                mechanic_id=None,
                accepted_at=None,
                reroute_reason=why.value,
                fallback_broadcast_at=sa.case(
                    (sa.and_(had_favorite, sr.c.fallback_broadcast_at.is_(None)), now),
                    else_=sr.c.fallback_broadcast_at,
                ),
            )
            .returning(*sr.c)
        )
        if row is None:
            return False
        request = SessionRequest.from_row(row)
        FALLBACKS.labels(reason=why.value).inc()
        await self._exclude(request_id, mechanic_id, "gave_back")
        await self.events.record(
            request_id, EventKind.MECHANIC_CANCELLED, mechanic_id=mechanic_id, attempt=request.attempt, detail=detail
        )
        await self.events.record(request_id, EventKind.FELL_BACK, attempt=request.attempt, detail=why.value)
        if why is FallbackReason.MECHANIC_CANCELLED:
            await self._hub.send(
                Envelope(
                    frame=protocol.ok("given_back", request_id), to=(mechanic_id,), holders_of=request_id, release=True
                )
            )
        await self._broadcast(request)
        return True

    # The customer's answers

    async def cancel(self, customer_id: str, request_id: str) -> SessionRequest:
        """The customer cancels: every outstanding offer is revoked, an assigned mechanic is told."""
        request = await self.get(request_id)
        if request.customer_id != customer_id:
            raise RequestNotFound()
        row = await self._db.fetch_one(
            sr.update()
            .where(sr.c.id == request.id, sr.c.status.in_([Status.PENDING.value, Status.ACCEPTED.value]))
            .values(status=Status.CANCELLED.value, phase=None, cancelled_at=utc_now(), ack_deadline=None)
            .returning(*sr.c)
        )
        if row is None:
            raise RequestNotCancellable()
        await self.events.record(request.id, EventKind.CANCELLED, detail="by customer")
        await self._redis.delete(self.keys.window(request.id, PRIORITY_ATTEMPT))
        await self._hub.send(
            Envelope(
                frame=protocol.offer_revoked(request.id, RevokeReason.CANCELLED.value),
                holders_of=request.id,
                release=True,
            )
        )
        return SessionRequest.from_row(row)

    # Mechanics leaving

    async def on_mechanic_deleted(self, mechanic_id: str) -> None:
        """Their priority requests fall back at once; requests they had accepted go back to the broadcast."""
        rows = await self._db.fetch_all(
            sa.select(sr.c.id, sr.c.attempt).where(
                sr.c.status == Status.PENDING.value,
                sr.c.phase == Phase.PRIORITY.value,
                sr.c.preferred_mechanic_id == mechanic_id,
            )
        )
        for row in rows:
            await self.fall_back(str(row["id"]), row["attempt"], FallbackReason.MECHANIC_DELETED)
        accepted = await self._db.fetch_all(
            sa.select(sr.c.id).where(sr.c.status == Status.ACCEPTED.value, sr.c.mechanic_id == mechanic_id)
        )
        for row in accepted:
            await self._return_to_broadcast(str(row["id"]), mechanic_id, FallbackReason.MECHANIC_DELETED, None)

    async def names_of(self, mechanic_ids: list[str]) -> dict[str, str]:
        """Names of mechanics, deleted ones included (a request's history keeps its names)."""
        ids = [i for i in mechanic_ids if i]
        if not ids:
            return {}
        rows = await self._db.fetch_all(sa.select(mechanics.c.id, mechanics.c.name).where(mechanics.c.id.in_(ids)))
        return {str(r["id"]): r["name"] for r in rows}
