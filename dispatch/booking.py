"""Booking rules: validate what the customer asked for and decide its routing, before anything is stored.

Shared by direct bookings, checkout and the Stripe webhook, so all three route a booking the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from base.errors import InvalidInput, MechanicNotFound, WorkshopNotFound
from dispatch.mechanics import Mechanic, Mechanics, ProviderType
from dispatch.models import Routing, SessionType
from dispatch.plans import Plans
from dispatch.rollout import Arm, arm_for
from dispatch.workshops import Workshop, Workshops


@dataclass(frozen=True)
class PreparedRequest:
    """A validated booking with its routing decided: what `insert` stores."""

    customer_id: str
    customer_name: str | None
    session_type: SessionType
    plan_code: str
    routing: Routing
    preferred: Mechanic | None  # the favorite mechanic, or
    workshop: Workshop | None  # the favorite workshop (never both)
    provider_type: ProviderType | None
    arm: Arm
    notes: tuple[str, ...]

    @property
    def favorite_id(self) -> str | None:
        return self.preferred.id if self.preferred else self.workshop.id if self.workshop else None

    @property
    def audience(self) -> tuple[str, ...]:
        """Whom the priority offer is for: the favorite, or every member of the favorite workshop."""
        return (self.preferred.id,) if self.preferred else self.workshop.member_ids if self.workshop else ()


@dataclass(frozen=True)
class NewRequest:
    """What the customer asked for; validated by `Dispatcher.create`."""

    customer_id: str
    customer_name: str | None
    session_type: str
    plan_code: str
    routing: str
    preferred_mechanic_id: str | None = None
    preferred_workshop_id: str | None = None
    provider_type: str | None = None


E = TypeVar("E", bound=StrEnum)


def _choice(value: str, enum: type[E], name: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(f"{name} must be one of: {allowed}.") from None


class BookingRules:
    def __init__(self, registry: Mechanics, workshops: Workshops, plans: Plans, rollout_percent: int) -> None:
        self._registry = registry
        self._workshops = workshops
        self._plans = plans
        self._rollout_percent = rollout_percent

    async def prepare(self, new: NewRequest, *, favorite_gone_means_broadcast: bool = False) -> PreparedRequest:
        """Validate a booking and decide its routing, without creating anything.

        A customer outside the rollout gets the broadcast even if they asked for their favorite (the favorite is
        still recorded, for the A/B comparison). After payment (`favorite_gone_means_broadcast`) a favorite
        deleted since checkout (a workshop: or left without members) turns the booking into a plain broadcast
        instead of failing it.
        """
        session_type = _choice(new.session_type, SessionType, "session_type")
        plan = await self._plans.get(new.plan_code)
        routing = _choice(new.routing, Routing, "routing")
        provider_type = _provider_type(new)
        arm = arm_for(new.customer_id, self._rollout_percent)
        notes: list[str] = []
        preferred: Mechanic | None = None
        workshop: Workshop | None = None
        if routing is not Routing.BROADCAST and not (new.preferred_mechanic_id or new.preferred_workshop_id):
            raise InvalidInput(f"routing {routing.value!r} needs a preferred_mechanic_id or preferred_workshop_id.")
        try:
            if new.preferred_mechanic_id:
                preferred = await self._registry.get(new.preferred_mechanic_id)
            elif new.preferred_workshop_id:
                workshop = await self._workshops.get(new.preferred_workshop_id)
                if not workshop.member_ids:
                    raise WorkshopNotFound("This workshop has no mechanics to book right now.")
        except (MechanicNotFound, WorkshopNotFound):
            if not favorite_gone_means_broadcast:
                raise
            notes.append("favorite no longer available: broadcast")
            routing = Routing.BROADCAST
            preferred = workshop = None
        if routing is Routing.BROADCAST and arm is Arm.PRIORITY:
            # "Find Available Mechanic Now": the seed clears the preference.
            preferred = workshop = None
        if arm is Arm.CONTROL and routing is not Routing.BROADCAST:
            notes.append(f"control arm: asked for {routing.value}, broadcast instead")
            routing = Routing.BROADCAST
        return PreparedRequest(
            customer_id=new.customer_id,
            customer_name=new.customer_name,
            session_type=session_type,
            plan_code=plan.code,
            routing=routing,
            preferred=preferred,
            workshop=workshop,
            provider_type=provider_type,
            arm=arm,
            notes=tuple(notes),
        )


def _provider_type(new: NewRequest) -> ProviderType | None:
    """A favorite is a mechanic (`independent`) or a workshop, named by the matching id and never both."""
    if new.preferred_mechanic_id and new.preferred_workshop_id:
        raise InvalidInput("Name a preferred_mechanic_id or a preferred_workshop_id, not both.")
    named = _choice(new.provider_type, ProviderType, "provider_type") if new.provider_type else None
    if new.preferred_workshop_id:
        if named is ProviderType.INDEPENDENT:
            raise InvalidInput("provider_type independent names a mechanic: use preferred_mechanic_id.")
        return ProviderType.WORKSHOP
    if new.preferred_mechanic_id:
        if named is ProviderType.WORKSHOP:
            raise InvalidInput("provider_type workshop names a workshop: use preferred_workshop_id.")
        return ProviderType.INDEPENDENT
    return named
