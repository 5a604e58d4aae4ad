"""The app factory and the one lifespan: open, build, start, serve, then stop in reverse order."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from databases import Database
from prometheus_client import multiprocess
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from api import http, metrics, payments, socket
from api.database import open_database
from api.payments import StripeGateway
from api.responses import exception_handlers
from api.settings import Settings, load_settings
from dispatch.deadlines import DeadlineKeeper
from dispatch.dispatcher import Dispatcher
from dispatch.favorites import Favorites
from dispatch.fulfillment import Fulfillment
from dispatch.keys import DispatchKeys
from dispatch.kpis import Kpis
from dispatch.mechanics import Mechanics
from dispatch.plans import Plans
from presence.bus import Bus
from presence.hub import Hub
from presence.tracker import PresenceTracker

log = logging.getLogger(__name__)

REDIS_POOL_SIZE = 64
SHUTDOWN_STEP_S = 5.0
CONSOLE_DIR = Path(__file__).resolve().parent / "console"


@dataclass(frozen=True)
class Services:
    """Everything a request handler may use; built once per process by the lifespan."""

    settings: Settings
    redis: Redis
    database: Database
    presence: PresenceTracker
    hub: Hub
    mechanics: Mechanics
    favorites: Favorites
    plans: Plans
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


async def _flush_last_seen_forever(services: Services) -> None:
    while True:
        await asyncio.sleep(services.settings.last_seen_flush_s)
        try:
            await services.presence.flush_last_seen(services.database)
        except (RedisError, OSError) as error:
            log.warning("last_seen flush skipped, Redis unreachable (%s)", error)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.jwt_secret_is_generated:
        log.warning("JWT_SECRET is not set: using a generated development secret (var/dev_jwt_secret)")
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL is not set: start the server with `make run` (which provides one) or set it")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Services]]:
        assert settings.redis_url is not None
        # A bounded pool that waits for a free connection, rather than failing, when thousands of sockets connect
        # at once.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=REDIS_POOL_SIZE,
            timeout=10,
            decode_responses=True,
            health_check_interval=10,
        )
        redis = Redis(connection_pool=pool)
        database = open_database(settings.database_url)
        await database.connect()
        if database.url.dialect == "sqlite":
            # Several server processes may share the file: WAL lets readers proceed during a write.
            await database.execute("PRAGMA journal_mode=WAL")

        bus = Bus(redis)
        presence = PresenceTracker(redis, settings.presence_config())
        keys = DispatchKeys(settings.key_prefix)
        hub = Hub(bus, keys.deliveries)
        mechanics = Mechanics(database, bus, keys.deleted_mechanics)
        favorites = Favorites(database, mechanics)
        plans = Plans(database)
        dispatcher = Dispatcher(
            database=database,
            redis=redis,
            hub=hub,
            presence=presence,
            registry=mechanics,
            favorites=favorites,
            plans=plans,
            config=settings.dispatch_config(),
        )
        keeper = DeadlineKeeper(database, dispatcher, bus)
        bus.subscribe(bus.expired_channel, presence.on_key_expired)
        services = Services(
            settings=settings,
            redis=redis,
            database=database,
            presence=presence,
            hub=hub,
            mechanics=mechanics,
            favorites=favorites,
            plans=plans,
            dispatcher=dispatcher,
            keeper=keeper,
            fulfillment=Fulfillment(database, dispatcher),
            kpis=Kpis(database),
            stripe=StripeGateway(settings) if settings.payments_enabled else None,
        )

        tasks = [
            asyncio.create_task(_supervise("pubsub", bus.run)),
            asyncio.create_task(_supervise("deadlines", keeper.run)),
            asyncio.create_task(_supervise("last_seen", lambda: _flush_last_seen_forever(services))),
        ]
        # Serve only once deliveries can be heard, or an offer published right after start-up could be missed.
        await asyncio.wait_for(bus.is_subscribed.wait(), timeout=10)
        try:
            yield {"services": services}
        finally:
            # Every step is bounded: a shutdown that waits forever on one stuck connection is worse than one that
            # leaves it to the operating system.
            for task in tasks:
                task.cancel()
            await _bounded("background tasks", asyncio.gather(*tasks, return_exceptions=True))
            await _bounded("deadline timers", keeper.stop())
            try:
                await _bounded("last_seen flush", presence.flush_last_seen(database))
            except (RedisError, OSError) as error:
                log.warning("final last_seen flush skipped (%s)", error)
            if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
            await _bounded("database", database.disconnect())
            await _bounded("redis", redis.aclose())

    return Starlette(
        routes=[
            *http.routes,
            *payments.routes,
            *metrics.routes,
            *socket.routes,
            Mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console"),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
