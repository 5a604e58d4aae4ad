"""Acks of priority offers, written in batches: every ack that arrives while a batch is being written goes in the
next one (a group commit).

An ack only stops the offer's resends, yet each was a write of its own: in a burst of priority bookings the
favorites' acks were a sixth of the server's CPU, competing with the bookings whose offers they confirm. A lone ack
is written at once, alone; under load one statement writes a batch.
"""

from __future__ import annotations

import asyncio

from base.tasks import spawn
from dispatch.models import OfferAck
from dispatch.requests import Requests


class AckWriter:
    def __init__(self, requests: Requests) -> None:
        self._requests = requests
        self._waiting: list[tuple[OfferAck, asyncio.Future[bool]]] = []
        self._writing = False

    async def write(self, ack: OfferAck) -> bool:
        """Record the ack once it is written; True if its offer is acked now (the first ack from someone it was
        for, or another in the same batch): its resends stop."""
        written = asyncio.get_running_loop().create_future()
        self._waiting.append((ack, written))
        if not self._writing:
            self._writing = True
            spawn(self._write_waiting())
        marked: bool = await written
        return marked

    async def _write_waiting(self) -> None:
        batch: list[tuple[OfferAck, asyncio.Future[bool]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    acked = await self._requests.ack_all([ack for ack, _ in batch])
                except Exception as error:  # noqa: BLE001  (each ack's caller answers its device with it)
                    for _, written in batch:
                        if not written.done():
                            written.set_exception(error)
                else:
                    for ack, written in batch:
                        if not written.done():
                            written.set_result((ack.request_id, ack.attempt) in acked)
        finally:  # cancelled (the process stops): no caller waits forever
            for _, written in (*batch, *self._waiting):
                written.cancel()
            self._waiting = []
            self._writing = False
