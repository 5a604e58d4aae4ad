"""Booking rules: validate what the customer asked for and decide its routing, before anything is stored.

Shared by direct bookings, checkout and the Stripe webhook, so all three route a booking the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from base.errors import InvalidInput, MechanicNotFound
from dispatch.mechanics import Mechanic, Mechanics, ProviderType
from dispatch.models import Routing, SessionType
from dispatch.plans import Plans
from dispatch.rollout import Arm, arm_for


@dataclass(frozen=True)
class PreparedRequest:
    """A validated booking with its routing decided: what `insert` stores."""

    customer_id: str
    customer_name: str | None
    session_type: SessionType
    plan_code: str
    routing: Routing
    preferred: Mechanic | None
    provider_type: ProviderType | None
    arm: Arm
    notes: tuple[str, ...]


@dataclass(frozen=True)
class NewRequest:
    """What the customer asked for; validated by `Dispatcher.create`."""

    customer_id: str
    customer_name: str | None
    session_type: str
    plan_code: str
    routing: str
    preferred_mechanic_id: str | None = None
    provider_type: str | None = None


E = TypeVar("E", bound=StrEnum)


def _choice(value: str, enum: type[E], name: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidInput(f"{name} must be one of: {allowed}.") from None


class BookingRules:
    def __init__(self, registry: Mechanics, plans: Plans, rollout_percent: int) -> None:
        self._registry = registry
        self._plans = plans
        self._rollout_percent = rollout_percent

    async def prepare(self, new: NewRequest, *, favorite_gone_means_broadcast: bool = False) -> PreparedRequest:
        """Validate a booking and decide its routing, without creating anything.

        A customer outside the rollout gets the broadcast even if they asked for their favorite (the favorite is
        still recorded, for the A/B comparison). After payment (`favorite_gone_means_broadcast`) a favorite
        deleted since checkout turns the booking into a plain broadcast instead of failing it.
        """
        session_type = _choice(new.session_type, SessionType, "session_type")
        plan = await self._plans.get(new.plan_code)
        routing = _choice(new.routing, Routing, "routing")
        provider_type = _choice(new.provider_type, ProviderType, "provider_type") if new.provider_type else None
        arm = arm_for(new.customer_id, self._rollout_percent)
        notes: list[str] = []
        preferred: Mechanic | None = None
        if routing is not Routing.BROADCAST and not new.preferred_mechanic_id:
            raise InvalidInput(f"routing {routing.value!r} needs a preferred_mechanic_id.")
        if new.preferred_mechanic_id:
            try:
                preferred = await self._registry.get(new.preferred_mechanic_id)
            except MechanicNotFound:
                if not favorite_gone_means_broadcast:
                    raise
                notes.append("favorite no longer available: broadcast")
                routing = Routing.BROADCAST
        if routing is Routing.BROADCAST and arm is Arm.PRIORITY:
            # "Find Available Mechanic Now": the seed clears the preference.
            preferred = None
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
            provider_type=provider_type or (ProviderType(preferred.provider_type) if preferred else None),
            arm=arm,
            notes=tuple(notes),
        )
