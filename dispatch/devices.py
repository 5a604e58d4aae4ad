"""A device's socket brought up to date with dispatch: greeted when it connects, and sent again what it may have
missed when its presence lapsed and came back, or when this process's pub/sub listener was away (pub/sub drops
what is published to a listener that is not there)."""

from __future__ import annotations

import asyncio
import logging

from delivery.hub import Connection, Hub
from dispatch.offers import hand_over
from dispatch.usecases import Dispatcher

log = logging.getLogger(__name__)

CONVERGING_AT_ONCE = 16  # sockets greeted again concurrently after a pub/sub gap (each a few database reads)


class Devices:
    def __init__(self, dispatcher: Dispatcher, hub: Hub) -> None:
        self._dispatcher = dispatcher
        self._hub = hub

    async def greet(self, connection: Connection) -> None:
        """A device that just connected: its sessions, the priority offers waiting for it, the open broadcasts."""
        hand_over(connection, await self._dispatcher.greet(connection.owner))

    async def regreet(self, mechanic_id: str, connection_id: str) -> None:
        """A device whose presence lapsed and came back gets what was offered (or left waiting) meanwhile."""
        connection = self._hub.find(mechanic_id, connection_id)
        if connection is not None:
            await self._converge(connection)

    async def converge_all(self) -> None:
        """Send every socket of this process the state it should hold, after a pub/sub gap."""
        connections = self._hub.connections()
        limit = asyncio.Semaphore(CONVERGING_AT_ONCE)

        async def one(connection: Connection) -> None:
            async with limit:
                if not connection.is_closed:
                    await self._converge(connection)

        await asyncio.gather(*(one(connection) for connection in connections))
        log.info("after a pub/sub gap, %d sockets were sent their state again", len(connections))

    async def _converge(self, connection: Connection) -> None:
        hand_over(connection, await self._dispatcher.converge(connection.owner, list(connection.topics)))
