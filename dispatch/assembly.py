"""Dispatch, assembled: the one place that knows how its parts fit together.

The composition root of this floor. A process's lifespan (`api/runtime.py`) hands it the connections and what
the floors below built (the bus, presence), and gets back what adapters use (use cases, views, the catalogue's
services) and the loops it must run; it never reaches into dispatch's parts itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from base.database import AppDatabase
from base.redis_client import RedisClient
from base.tasks import spawn
from delivery.bus import Bus
from delivery.hub import Hub
from dispatch.booking import BookingRules
from dispatch.config import DispatchConfig
from dispatch.devices import Devices
from dispatch.favorites import Favorites
from dispatch.fulfillment import Fulfillment
from dispatch.idempotency import IdempotencyKeys
from dispatch.keeper import DeadlineKeeper
from dispatch.keys import DispatchKeys
from dispatch.kpis import Kpis
from dispatch.live_favorites import LiveFavorites
from dispatch.mechanics import Mechanics
from dispatch.offers import Offers
from dispatch.owed import Owed, OwedDriver
from dispatch.plans import Plans
from dispatch.pushes import Pushes, PushSender, PushSubscriptions
from dispatch.requests import Requests
from dispatch.usecases import Dispatcher
from dispatch.views import Views
from dispatch.windows import Windows
from dispatch.workshops import Workshops
from presence.tracker import PresenceTracker


@dataclass(frozen=True)
class Dispatch:
    """What adapters use, and the loops a process runs for dispatch (`loops`, each to be kept alive)."""

    hub: Hub
    dispatcher: Dispatcher
    devices: Devices
    views: Views
    fulfillment: Fulfillment
    kpis: Kpis
    mechanics: Mechanics
    workshops: Workshops
    favorites: Favorites
    live_favorites: LiveFavorites
    plans: Plans
    pushes: Pushes
    loops: dict[str, Callable[[], Awaitable[None]]]
    stop: Callable[[], Awaitable[None]]


def assemble(
    database: AppDatabase,
    redis: RedisClient,
    bus: Bus,
    presence: PresenceTracker,
    config: DispatchConfig,
    push_sender: PushSender | None,
) -> Dispatch:
    """Build dispatch on its connections and wire its hooks: the order of construction is the order of
    dependency."""
    keys = DispatchKeys(config.key_prefix)
    hub = Hub(bus, keys.deliveries, presence.publish_to_devices if config.routed_deliveries else None)
    mechanics = Mechanics(database, bus, keys.changed_mechanics)
    workshops = Workshops(database, mechanics, bus, keys.changed_workshops)
    live_favorites = LiveFavorites(
        presence.replica, bus, keys.changed_favorites, (keys.changed_mechanics, keys.changed_workshops)
    )
    favorites = Favorites(database, mechanics, workshops, live_favorites)
    plans = Plans(database)
    requests = Requests(database)
    pushes = Pushes(PushSubscriptions(database), requests, push_sender, config.push_retry_base_s)
    owed = Owed()
    dispatcher = Dispatcher(
        requests=requests,
        windows=Windows(redis, keys),
        offers=Offers(hub),
        presence=presence,
        mechanics=mechanics,
        workshops=workshops,
        favorites=favorites,
        pushes=pushes,
        rules=BookingRules(mechanics, workshops, plans, config.rollout_percent),
        config=config,
        owed=owed,
        idempotency=IdempotencyKeys(database),
    )
    keeper = DeadlineKeeper(dispatcher, bus, keys.deadlines)
    devices = Devices(dispatcher, hub)
    presence.on_revived(lambda mechanic_id, connection_id: spawn(devices.regreet(mechanic_id, connection_id)))

    async def converge_off_the_listeners_path() -> None:
        spawn(devices.converge_all())

    bus.on_reconnect(converge_off_the_listeners_path)
    driver = OwedDriver(owed, requests, dispatcher.redeliver)

    async def stop() -> None:
        """Both at once: a keeper slow to stop must not keep the pushes from stopping within the shutdown's bound."""
        await asyncio.gather(keeper.stop(), pushes.stop())

    return Dispatch(
        hub=hub,
        dispatcher=dispatcher,
        devices=devices,
        views=Views(requests, mechanics, workshops, favorites),
        fulfillment=Fulfillment(database, dispatcher, plans),
        kpis=Kpis(database),
        mechanics=mechanics,
        workshops=workshops,
        favorites=favorites,
        live_favorites=live_favorites,
        plans=plans,
        pushes=pushes,
        loops={
            "deadlines": keeper.run,
            "owed deliveries": driver.run,
            "favorites announcements": live_favorites.announce_forever,
        },
        stop=stop,
    )
