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

from databases import Database
from prometheus_client import multiprocess
from redis.exceptions import RedisError
from starlette.applications import Starlette

from api.auth import TokenVerifier
from api.poll_log import PollLog
from api.settings import Settings
from api.stripe_gateway import StripeGateway
from api.web_push import WebPushSender
from base.database import SchemaCheck, open_database
from base.garbage import pace_forever
from base.redis_client import RedisClient
from base.redis_client import connect as connect_redis
from base.tasks import spawn
from delivery.bus import Bus
from delivery.hub import Hub
from delivery.liveness import SocketRegistry
from dispatch.assembly import assemble
from dispatch.devices import Devices
from dispatch.favorites import Favorites
from dispatch.fulfillment import Fulfillment
from dispatch.kpis import Kpis
from dispatch.live_favorites import LiveFavorites
from dispatch.mechanics import Mechanics
from dispatch.plans import Plans
from dispatch.pushes import Pushes
from dispatch.usecases import Dispatcher
from dispatch.views import Views
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
    schema: SchemaCheck
    presence: PresenceTracker
    hub: Hub
    sockets: SocketRegistry
    workshops: Workshops
    mechanics: Mechanics
    favorites: Favorites
    live_favorites: LiveFavorites
    plans: Plans
    pushes: Pushes
    push_sender: WebPushSender | None
    dispatcher: Dispatcher
    devices: Devices
    views: Views
    fulfillment: Fulfillment
    kpis: Kpis
    stripe: StripeGateway | None
    poll_log: PollLog
    dispatch_loops: dict[str, Callable[[], Awaitable[None]]]  # run and kept alive by the lifespan
    stop_dispatch: Callable[[], Awaitable[None]]


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
        presence, database, redis, bus = services.presence, services.database, services.redis, services.bus
        tasks = [
            asyncio.create_task(_supervise("pubsub", bus.run)),
            *(asyncio.create_task(_supervise(name, loop)) for name, loop in services.dispatch_loops.items()),
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
                    lambda: _every(settings.presence_ttl_s, "presence reconcile", presence.replica.reconcile),
                )
            ),
            asyncio.create_task(_supervise("liveness", services.sockets.sweep_forever)),
            asyncio.create_task(_supervise("collector pacing", pace_forever)),
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
            await _bounded("deadline timers and pushes", services.stop_dispatch())
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
    push_sender = (
        WebPushSender(
            str(settings.vapid_private_key), settings.vapid_subject, settings.push_timeout_s, settings.push_targets()
        )
        if settings.web_push
        else None
    )
    dispatch = assemble(database, redis, bus, presence, settings.dispatch_config(), push_sender)
    sockets = SocketRegistry(settings.presence_ttl_s)
    sockets.on_silent(
        lambda connection, silent_s: spawn(
            presence.release_silent(connection.owner, connection.connection_id, silent_s)
        )
    )
    return Services(
        settings=settings,
        tokens=TokenVerifier(str(settings.jwt_secret)),
        redis=redis,
        bus=bus,
        database=database,
        schema=SchemaCheck(database),
        presence=presence,
        hub=dispatch.hub,
        sockets=sockets,
        mechanics=dispatch.mechanics,
        workshops=dispatch.workshops,
        favorites=dispatch.favorites,
        live_favorites=dispatch.live_favorites,
        plans=dispatch.plans,
        pushes=dispatch.pushes,
        push_sender=push_sender,
        dispatcher=dispatch.dispatcher,
        devices=dispatch.devices,
        views=dispatch.views,
        fulfillment=dispatch.fulfillment,
        kpis=dispatch.kpis,
        stripe=StripeGateway(settings) if settings.payments_enabled else None,
        poll_log=PollLog(settings.poll_log_interval_s, logging.getLogger("api.poll_log")),
        dispatch_loops=dispatch.loops,
        stop_dispatch=dispatch.stop,
    )
