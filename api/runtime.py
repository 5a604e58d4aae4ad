"""What a process runs on: `Services` (everything a handler may use) and the one lifespan that opens, builds,
starts, serves, then stops them in reverse order."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from databases import Database
from prometheus_client import multiprocess
from redis.exceptions import RedisError
from starlette.applications import Starlette

from api.auth import TokenVerifier
from api.database import open_database
from api.settings import Settings
from api.stripe_gateway import StripeGateway
from api.web_push import WebPushSender
from base.redis_client import RedisClient
from base.redis_client import connect as connect_redis
from delivery.bus import Bus
from delivery.hub import Hub
from delivery.liveness import SocketRegistry
from dispatch.booking import BookingRules
from dispatch.favorites import Favorites
from dispatch.fulfillment import Fulfillment
from dispatch.keeper import DeadlineKeeper
from dispatch.keys import DispatchKeys
from dispatch.kpis import Kpis
from dispatch.mechanics import Mechanics
from dispatch.offers import Offers, hand_over
from dispatch.plans import Plans
from dispatch.pushes import Pushes, PushSubscriptions
from dispatch.requests import Requests
from dispatch.usecases import Dispatcher
from dispatch.windows import Windows
from dispatch.workshops import Workshops
from presence.tracker import PresenceTracker

log = logging.getLogger(__name__)

REDIS_POOL_SIZE = 64
SHUTDOWN_STEP_S = 5.0


@dataclass(frozen=True)
class Services:
    """Everything a request handler may use; built once per process by the lifespan."""

    settings: Settings
    tokens: TokenVerifier
    redis: RedisClient
    bus: Bus
    database: Database
    presence: PresenceTracker
    hub: Hub
    sockets: SocketRegistry
    workshops: Workshops
    mechanics: Mechanics
    favorites: Favorites
    plans: Plans
    pushes: Pushes
    push_sender: WebPushSender | None
    dispatcher: Dispatcher
    keeper: DeadlineKeeper
    fulfillment: Fulfillment
    kpis: Kpis
    stripe: StripeGateway | None


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a background loop alive: a crash is logged and the loop restarted, never a silent dead task."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s crashed; restarting in 1s", name)
            await asyncio.sleep(1)


async def _bounded(step: str, awaitable: Awaitable[object]) -> None:
    """One shutdown step, given SHUTDOWN_STEP_S at most; a step still running then is left behind, not awaited
    (`wait_for` would wait for its cancellation, which a stuck step may never finish)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_STEP_S)
    if not done:
        log.warning("shutdown: %s did not finish within %.0f s; moving on", step, SHUTDOWN_STEP_S)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return
    task.result()


async def _every(period_s: float, what: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run `step` every `period_s`; Redis being away skips a round and is logged, never stops the loop."""
    while True:
        await asyncio.sleep(period_s)
        try:
            await step()
        except (RedisError, OSError) as error:
            log.warning("%s skipped, Redis unreachable (%s)", what, error)


@functools.cache  # once per process: a test process starts many apps, and must not freeze what its tests left
def _freeze_start_up_objects() -> None:
    """What start-up built (modules, classes, settings, the replica) lives as long as the process: moved out of the
    collector's generations, it is not traversed again by every full collection, each of which would otherwise stop
    every socket of this process for tens of milliseconds more (124k objects here)."""
    gc.collect()
    gc.freeze()


def lifespan_for(settings: Settings) -> Callable[[Starlette], AbstractAsyncContextManager[dict[str, Services]]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Services]]:
        services = await open_services(settings)
        presence, database, redis, keeper = services.presence, services.database, services.redis, services.keeper
        bus = services.bus
        tasks = [
            asyncio.create_task(_supervise("pubsub", bus.run)),
            asyncio.create_task(_supervise("deadlines", keeper.run)),
            asyncio.create_task(
                _supervise(
                    "last_seen",
                    lambda: _every(
                        settings.last_seen_flush_s, "last_seen flush", lambda: presence.flush_last_seen(database)
                    ),
                )
            ),
            asyncio.create_task(
                _supervise(
                    "presence replica",
                    lambda: _every(settings.presence_ttl_s, "presence reconcile", presence.replica.rebuild),
                )
            ),
            asyncio.create_task(_supervise("liveness", services.sockets.sweep_forever)),
        ]
        # Serve only once deliveries can be heard, or an offer published right after start-up could be missed.
        await asyncio.wait_for(bus.is_subscribed.wait(), timeout=10)
        await presence.replica.rebuild()
        _freeze_start_up_objects()
        try:
            yield {"services": services}
        finally:
            # Every step is bounded: a shutdown that waits forever on one stuck connection is worse than one that
            # leaves it to the operating system.
            for task in tasks:
                task.cancel()
            await _bounded("background tasks", asyncio.gather(*tasks, return_exceptions=True))
            await _bounded("deadline timers", keeper.stop())
            await _bounded("pushes", services.pushes.stop())
            if services.push_sender is not None:
                await _bounded("push sessions", services.push_sender.close())
            try:
                await _bounded("last_seen flush", presence.flush_last_seen(database))
            except (RedisError, OSError) as error:
                log.warning("final last_seen flush skipped (%s)", error)
            if settings.prometheus_multiproc_dir:
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
            await _bounded("database", database.disconnect())
            await _bounded("redis", redis.aclose())

    return lifespan


async def open_services(settings: Settings) -> Services:
    """Connect to Redis and the database and wire every service; the order of construction is the order of
    dependency (delivery and presence, then dispatch)."""
    assert settings.redis_url is not None
    redis = connect_redis(settings.redis_url, REDIS_POOL_SIZE)
    database = open_database(settings.database_url)
    await database.connect()
    if database.url.dialect == "sqlite":
        # Several server processes may share the file: WAL lets readers proceed during a write.
        await database.execute("PRAGMA journal_mode=WAL")

    bus = Bus(redis)
    presence = PresenceTracker(redis, settings.presence_config())
    bus.subscribe_scripted(presence.keys.transitions, presence.replica.on_transition)
    bus.subscribe_expired(presence.on_key_expired)
    bus.on_reconnect(presence.replica.rebuild)
    keys = DispatchKeys(settings.key_prefix)
    hub = Hub(bus, keys.deliveries, presence.publish_to_devices if settings.routed_deliveries else None)
    mechanics = Mechanics(database, bus, keys.changed_mechanics)
    workshops = Workshops(database, mechanics, bus, keys.changed_workshops)
    favorites = Favorites(database, mechanics, workshops)
    plans = Plans(database)
    dispatch_config = settings.dispatch_config()
    requests = Requests(database)
    push_sender = WebPushSender(str(settings.vapid_private_key), settings.vapid_subject) if settings.web_push else None
    pushes = Pushes(PushSubscriptions(database), requests, push_sender, settings.push_retry_base_s)
    dispatcher = Dispatcher(
        requests=requests,
        windows=Windows(redis, keys),
        offers=Offers(hub),
        presence=presence,
        mechanics=mechanics,
        workshops=workshops,
        favorites=favorites,
        pushes=pushes,
        rules=BookingRules(mechanics, workshops, plans, dispatch_config.rollout_percent),
        config=dispatch_config,
    )
    keeper = DeadlineKeeper(dispatcher, bus, keys.deadlines)
    presence.on_revived(
        lambda mechanic_id, connection_id: _spawn(_regreet(dispatcher, hub, mechanic_id, connection_id))
    )
    sockets = SocketRegistry(settings.presence_ttl_s)
    sockets.on_silent(lambda connection: _release_later(presence, connection.owner, connection.connection_id))
    return Services(
        settings=settings,
        tokens=TokenVerifier(str(settings.jwt_secret)),
        redis=redis,
        bus=bus,
        database=database,
        presence=presence,
        hub=hub,
        sockets=sockets,
        mechanics=mechanics,
        workshops=workshops,
        favorites=favorites,
        plans=plans,
        pushes=pushes,
        push_sender=push_sender,
        dispatcher=dispatcher,
        keeper=keeper,
        fulfillment=Fulfillment(database, dispatcher),
        kpis=Kpis(database),
        stripe=StripeGateway(settings) if settings.payments_enabled else None,
    )


_side_tasks: set[asyncio.Task[Any]] = set()


def _spawn(work: Awaitable[Any]) -> None:
    """Run a callback's follow-up off the path that called it, keeping a reference until it ends."""
    task = asyncio.ensure_future(work)
    _side_tasks.add(task)
    task.add_done_callback(_side_task_done)


def _side_task_done(task: asyncio.Task[Any]) -> None:
    _side_tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("background step failed: %r", task.exception())


def _release_later(presence: PresenceTracker, mechanic_id: str, connection_id: str) -> None:
    """A socket closed for silence stops counting as online now, not when its close handshake ends."""
    _spawn(presence.untrack(mechanic_id, connection_id))


async def _regreet(dispatcher: Dispatcher, hub: Hub, mechanic_id: str, connection_id: str) -> None:
    """A device whose presence lapsed and came back gets what was offered (or left waiting) meanwhile."""
    connection = hub.find(mechanic_id, connection_id)
    if connection is not None:
        hand_over(connection, await dispatcher.greet(mechanic_id))
