"""The use cases driven directly, with a real Redis and a real database and no HTTP or socket in between."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from api.runtime import Services, open_services
from api.settings import Settings
from base.errors import NotYourRequest, OfferUnavailable
from dispatch.booking import NewRequest
from dispatch.frames import Assigned, Offer
from dispatch.mechanics import ProviderType
from dispatch.models import Routing, Status
from dispatch.tables import favorites
from dispatch.wording import customer_message


@pytest.fixture
async def services(settings: Settings, redis: Redis) -> AsyncIterator[Services]:
    opened = await open_services(settings)
    yield opened
    await opened.database.disconnect()
    await opened.redis.aclose()


def _booking(customer_id: str, **fields: str) -> NewRequest:
    values = {"customer_name": "Jordan", "session_type": "video", "plan_code": "standard", "routing": "broadcast"}
    return NewRequest(customer_id=customer_id, **{**values, **fields})


async def _kinds(services: Services, request_id: str) -> list[str]:
    return [e.kind for e in await services.dispatcher.requests.events_of(request_id)]


async def test_accept_commits_its_event_and_the_favorites_count_together(services: Services) -> None:
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    customer = str(uuid.uuid4())
    await services.favorites.add(customer, sam.id, ProviderType.INDEPENDENT)
    request = await services.dispatcher.book(_booking(customer))
    accepted = await services.dispatcher.accept(sam.id, request.id, request.attempt)
    assert accepted.status is Status.ACCEPTED and accepted.mechanic_id == sam.id
    assert await _kinds(services, request.id) == ["created", "broadcast", "accepted"]
    count = await services.database.fetch_val(
        sa.select(favorites.c.booking_count).where(favorites.c.customer_id == customer)
    )
    assert count == 1
    with pytest.raises(OfferUnavailable):
        await services.dispatcher.accept(sam.id, request.id, request.attempt)
    assert await _kinds(services, request.id) == ["created", "broadcast", "accepted"]


async def test_a_failed_give_back_leaves_nothing_half_done(services: Services) -> None:
    """A write that fails mid-transition (text the database cannot store) rolls the whole transition back."""
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    request = await services.dispatcher.book(_booking(str(uuid.uuid4())))
    await services.dispatcher.accept(sam.id, request.id, request.attempt)
    with pytest.raises(Exception):  # noqa: B017  (each driver raises its own encoding error)
        await services.dispatcher.give_back(sam.id, request.id, "\ud800")
    after = await services.dispatcher.requests.get(request.id)
    assert after.status is Status.ACCEPTED and after.mechanic_id == sam.id
    assert await services.dispatcher.requests.excluded(request.id) == ()
    assert await _kinds(services, request.id) == ["created", "broadcast", "accepted"]
    await services.dispatcher.give_back(sam.id, request.id, "flat tyre")
    assert await _kinds(services, request.id) == [
        "created", "broadcast", "accepted", "mechanic_cancelled", "fell_back", "broadcast",
    ]  # fmt: skip
    with pytest.raises(NotYourRequest):
        await services.dispatcher.give_back(sam.id, request.id, None)


async def test_a_priority_booking_for_an_offline_favorite_is_notify_and_wait(services: Services) -> None:
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    request = await services.dispatcher.book(
        _booking(str(uuid.uuid4()), routing="priority", preferred_mechanic_id=sam.id)
    )
    assert request.routing is Routing.NOTIFY_AND_WAIT and request.priority_notified_at is None
    assert "offline" in customer_message(request, {sam.id: "Sam"})


async def test_greeting_tells_a_device_its_sessions_and_the_offers_open_to_it(services: Services) -> None:
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    customer = str(uuid.uuid4())
    taken = await services.dispatcher.book(_booking(customer))
    await services.dispatcher.accept(sam.id, taken.id, taken.attempt)
    waiting = await services.dispatcher.book(
        _booking(customer, routing="notify_and_wait", preferred_mechanic_id=sam.id)
    )
    greetings = await services.dispatcher.greet(sam.id)
    assigned = [g.frame for g in greetings if isinstance(g.frame, Assigned)]
    offers = [g.frame for g in greetings if isinstance(g.frame, Offer)]
    assert [a.request_id for a in assigned] == [taken.id]
    assert [(o.request_id, o.kind) for o in offers] == [(waiting.id, "priority")]
    # Greeting the favorite is delivering the priority offer: it is recorded once, with its ack clock.
    assert (await services.dispatcher.requests.get(waiting.id)).priority_notified_at is not None
    await services.dispatcher.greet(sam.id)
    assert (await _kinds(services, waiting.id)).count("offered") == 1


async def test_a_decline_by_the_favorite_falls_back_with_its_exclusion_in_one_commit(services: Services) -> None:
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    request = await services.dispatcher.book(
        _booking(str(uuid.uuid4()), routing="notify_and_wait", preferred_mechanic_id=sam.id)
    )
    await services.dispatcher.decline(sam.id, request.id)
    after = await services.dispatcher.requests.get(request.id)
    assert after.phase is not None and after.phase.value == "broadcast" and after.attempt == 2
    assert await services.dispatcher.requests.excluded(request.id) == (sam.id,)
    assert await _kinds(services, request.id) == ["created", "declined", "fell_back", "broadcast"]
    with pytest.raises(OfferUnavailable):
        await services.dispatcher.accept(sam.id, request.id, after.attempt)


async def test_each_statement_shape_is_compiled_once(services: Services) -> None:
    """Bookings after the first reuse the compiled statements: the cache stops growing, results stay right."""
    backend = services.database._backend  # the process's one backend, holder of the statement cache
    customer = str(uuid.uuid4())
    first = await services.dispatcher.book(_booking(customer))
    shapes = len(backend.statements._by_shape)  # type: ignore[attr-defined]
    assert shapes > 0
    second = await services.dispatcher.book(_booking(customer, session_type="chat"))
    assert len(backend.statements._by_shape) == shapes  # type: ignore[attr-defined]
    assert second.id != first.id and second.session_type == "chat"
    assert (await services.dispatcher.requests.get(second.id)).session_type == "chat"
