"""The use cases driven directly, with a real Redis and a real database and no HTTP or socket in between."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from api.runtime import Services, open_services
from api.settings import Settings
from base.clock import iso
from base.errors import InvalidInput, NotYourRequest, OfferUnavailable
from base.tables import mechanics
from dispatch.booking import NewRequest
from dispatch.frames import Assigned, Offer
from dispatch.mechanics import ProviderType
from dispatch.models import FallbackReason, OfferKind, Routing, Status, offer_id
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


async def test_accept_commits_its_event_once(services: Services) -> None:
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    customer = str(uuid.uuid4())
    await services.favorites.add(customer, sam.id, ProviderType.INDEPENDENT)
    request = await services.dispatcher.book(_booking(customer))
    accepted = await services.dispatcher.accept(sam.id, request.id, request.attempt)
    assert accepted.status is Status.ACCEPTED and accepted.mechanic_id == sam.id
    assert await _kinds(services, request.id) == ["created", "broadcast", "accepted"]
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


async def test_a_window_falls_due_at_the_millisecond_the_api_states(services: Services) -> None:
    """`priority_deadline` and the offer's `expires_at` carry milliseconds: the deadline kept is exactly that one,
    stored and read back, not a later microsecond."""
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    request = await services.dispatcher.book(
        _booking(str(uuid.uuid4()), routing="priority", preferred_mechanic_id=sam.id)
    )
    stored = await services.dispatcher.requests.get(request.id)
    assert stored.priority_deadline is not None
    assert stored.priority_deadline == datetime.fromisoformat(str(iso(stored.priority_deadline)))


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


async def test_a_greeting_whose_offer_fell_back_since_it_was_read_sends_no_stale_priority_offer(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window lapses between the greeting's read and its marking the offer sent: the device gets no priority
    offer at the old attempt (the fallback's broadcast reaches it); one marked first by another process stands."""
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    customer = str(uuid.uuid4())
    lapsing = await services.dispatcher.book(
        _booking(customer, routing="notify_and_wait", preferred_mechanic_id=sam.id)
    )
    read = services.dispatcher.requests.offerable_to

    async def read_then_lapse(*args: Any) -> Any:
        found = await read(*args)
        await services.dispatcher.fall_back(lapsing.id, lapsing.attempt, FallbackReason.MISSED_ACKS)
        return found

    monkeypatch.setattr(services.dispatcher.requests, "offerable_to", read_then_lapse)
    assert [g.frame for g in await services.dispatcher.greet(sam.id) if isinstance(g.frame, Offer)] == []
    monkeypatch.undo()

    marked_elsewhere = await services.dispatcher.book(
        _booking(str(uuid.uuid4()), routing="notify_and_wait", preferred_mechanic_id=sam.id)
    )

    async def read_then_mark(*args: Any) -> Any:
        found = await read(*args)
        monkeypatch.undo()
        await services.dispatcher.greet(sam.id)  # another device of Sam's, greeted first
        return found

    monkeypatch.setattr(services.dispatcher.requests, "offerable_to", read_then_mark)
    offers = [g.frame for g in await services.dispatcher.greet(sam.id) if isinstance(g.frame, Offer)]
    assert {(o.request_id, o.kind) for o in offers} == {(lapsing.id, "broadcast"), (marked_elsewhere.id, "priority")}


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


async def test_acks_that_arrive_together_are_written_together_each_offer_once(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acks are written in batches: two devices of the favorite acking one offer log one `acked` event, and acks
    of another attempt or by a mechanic the offer was not for change nothing."""
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    alex = await services.mechanics.create("Alex", ProviderType.INDEPENDENT)
    first, second = [
        await services.dispatcher.book(
            _booking(str(uuid.uuid4()), routing="notify_and_wait", preferred_mechanic_id=sam.id)
        )
        for _ in range(2)
    ]
    requests = services.dispatcher.requests
    statements = []
    write_batch = requests.ack_all

    async def counted(acks: Any) -> set[tuple[str, int]]:
        statements.append(len(acks))
        return await write_batch(acks)

    monkeypatch.setattr(requests, "ack_all", counted)
    await asyncio.gather(
        services.dispatcher.ack(sam.id, offer_id(first.id, first.attempt, OfferKind.PRIORITY)),
        services.dispatcher.ack(sam.id, offer_id(first.id, first.attempt, OfferKind.PRIORITY)),  # a second device
        services.dispatcher.ack(alex.id, offer_id(second.id, second.attempt, OfferKind.PRIORITY)),  # not theirs
        services.dispatcher.ack(sam.id, offer_id(second.id, second.attempt + 1, OfferKind.PRIORITY)),  # no such
    )
    assert sum(statements) == 4 and len(statements) < 4
    events = await requests.events_of(first.id)
    assert [(e.kind, e.mechanic_id) for e in events if e.kind == "acked"] == [("acked", sam.id)]
    assert (await requests.get(first.id)).offer_acked_at is not None
    assert "acked" not in await _kinds(services, second.id)
    assert (await requests.get(second.id)).offer_acked_at is None
    await services.dispatcher.ack(sam.id, offer_id(second.id, second.attempt, OfferKind.PRIORITY))
    assert (await _kinds(services, second.id)).count("acked") == 1


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


async def test_an_acked_offer_costs_no_process_a_call_at_its_ack_deadline(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process holds a timer for each ack deadline (armed in one, sent to the others); an ack drops them all,
    so that at the deadline no process goes to the database to find out that nothing is to be done."""
    processes = [await open_services(settings), await open_services(settings)]
    overdue_calls: list[str] = []
    for services in processes:
        resend_or_fall_back = services.dispatcher.resend_or_fall_back

        async def counted(request_id: str, attempt: int, call: Any = resend_or_fall_back) -> None:
            overdue_calls.append(request_id)
            await call(request_id, attempt)

        monkeypatch.setattr(services.dispatcher, "resend_or_fall_back", counted)
    running = [asyncio.create_task(task()) for s in processes for task in (s.bus.run, s.dispatch_loops["deadlines"])]
    try:
        for services in processes:
            await asyncio.wait_for(services.bus.is_subscribed.wait(), 10)
        first = processes[0]
        sam = await first.mechanics.create("Sam", ProviderType.INDEPENDENT)
        acked, unacked = [
            await first.dispatcher.book(
                _booking(str(uuid.uuid4()), routing="notify_and_wait", preferred_mechanic_id=sam.id)
            )
            for _ in range(2)
        ]
        greetings = await first.dispatcher.greet(sam.id)  # delivers both offers: their ack clocks start
        offers = {g.frame.request_id: g.frame.offer_id for g in greetings if isinstance(g.frame, Offer)}
        await asyncio.sleep(0.1)  # the other process hears of the deadlines
        await first.dispatcher.ack(sam.id, offers[acked.id])
        await asyncio.sleep(settings.offer_ack_timeout_s + 0.5)
        # Only the unacked offer's deadline was acted on (in each process; the database let one resend it).
        assert acked.id not in overdue_calls and overdue_calls.count(unacked.id) >= 2
        assert (await _kinds(first, unacked.id)).count("resent") >= 1
        assert (await _kinds(first, acked.id)).count("resent") == 0
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for services in processes:
            await services.stop_dispatch()
            await services.database.disconnect()
            await services.redis.aclose()


async def test_callers_missing_one_mechanic_together_share_one_read(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty status polls in flight when a mechanic's cache entry expires make one database read, not fifty; a
    change announced while a read is in flight is not undone by that read's result."""
    sam = await services.mechanics.create("Sam", ProviderType.INDEPENDENT)
    alex = await services.mechanics.create("Alex", ProviderType.INDEPENDENT)
    database = services.mechanics._db
    fetch_all = database.fetch_all
    reads: list[object] = []
    answered, slow_answer = asyncio.Event(), asyncio.Event()
    slow_answer.set()

    async def counted(query: Any, values: Any = None) -> Any:
        reads.append(query)
        rows = await fetch_all(query, values)
        answered.set()
        await slow_answer.wait()
        return rows

    monkeypatch.setattr(database, "fetch_all", counted)
    polls = await asyncio.gather(*(services.mechanics.get(sam.id) for _ in range(50)))
    assert {m.name for m in polls} == {"Sam"} and len(reads) == 1
    both = await asyncio.gather(*(services.mechanics.get_many([sam.id, alex.id]) for _ in range(20)))
    assert all(sorted(m.name for m in found) == ["Alex", "Sam"] for found in both) and len(reads) == 2

    await services.mechanics.changed(alex.id)
    answered.clear()
    slow_answer.clear()
    in_flight = asyncio.create_task(services.mechanics.get(alex.id))
    await answered.wait()  # the database has answered "Alex"; the answer is on its way
    await services.database.execute(mechanics.update().where(mechanics.c.id == alex.id).values(name="Alexa"))
    await services.mechanics.changed(alex.id)
    slow_answer.set()
    assert (await in_flight).name == "Alex"  # it raced the rename and read first: fair
    assert (await services.mechanics.get(alex.id)).name == "Alexa"  # but the cache kept no stale copy


async def test_bookings_finding_the_plans_expired_share_one_read(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = services.plans._db
    fetch_all = database.fetch_all
    reads: list[object] = []

    async def counted(query: Any, values: Any = None) -> Any:
        reads.append(query)
        return await fetch_all(query, values)

    monkeypatch.setattr(database, "fetch_all", counted)
    for _ in range(2):  # the first read at start, then one again when the copy has expired
        found = await asyncio.gather(*(services.plans.get("quick") for _ in range(30)))
        assert {plan.code for plan in found} == {"quick"}
        monkeypatch.setattr(services.plans, "_fresh_until", 0.0)
    assert len(reads) == 2
    with pytest.raises(InvalidInput):
        await services.plans.get("no-such-plan")
