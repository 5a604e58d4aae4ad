"""Live connections of this process and delivery of frames to them, from any process.

Any process publishes an `Envelope` on one Redis channel; every process hands it to the local connections it
addresses. A frame is encoded once per envelope, and each connection has a bounded outgoing queue drained by its
own task, so one slow client never holds up a broadcast (websockets' broadcast topic): a client that falls
`QUEUE_LIMIT` frames behind is dropped.

Connections carry topics (a request id -> the attempt they were offered) so that an offer reaches each device
once per attempt, however many paths try to deliver it, and a revocation reaches only the devices holding it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from presence.bus import Bus
from presence.metrics import CONNECTED_SOCKETS

log = logging.getLogger(__name__)

QUEUE_LIMIT = 256

_background: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Awaitable[None]) -> None:
    """Run a close without waiting for it, holding a reference so the task is not collected mid-way."""
    task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


SendFrame = Callable[[str], Awaitable[None]]
Drop = Callable[[int], Awaitable[None]]

CLOSE_TOO_SLOW = 1013  # "try again later": the client fell too far behind


@dataclass(frozen=True)
class Envelope:
    """What to send to whom. `to=None` means every connected mechanic but those in `exclude`.

    `topic`/`attempt` tag an offer (sent once per device and attempt unless `resend`); `holders_of` restricts
    delivery to devices holding that topic, and `release` removes it from them (a revocation).
    """

    frame: str
    to: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    topic: str | None = None
    attempt: int | None = None
    resend: bool = False
    holders_of: str | None = None
    release: bool = False
    close_code: int | None = None

    def encode(self) -> str:
        return json.dumps(
            {
                "frame": self.frame,
                "to": self.to,
                "exclude": self.exclude,
                "topic": self.topic,
                "attempt": self.attempt,
                "resend": self.resend,
                "holders_of": self.holders_of,
                "release": self.release,
                "close_code": self.close_code,
            }
        )

    @classmethod
    def decode(cls, data: str) -> Envelope:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            frame=raw["frame"],
            to=tuple(raw["to"]) if raw["to"] is not None else None,
            exclude=tuple(raw["exclude"]),
            topic=raw["topic"],
            attempt=raw["attempt"],
            resend=raw["resend"],
            holders_of=raw["holders_of"],
            release=raw["release"],
            close_code=raw["close_code"],
        )


@dataclass(eq=False)
class Connection:
    """One device's socket as the hub sees it: an id, its owner, a send function and a bounded queue."""

    connection_id: str
    mechanic_id: str
    send_frame: SendFrame
    drop: Drop
    topics: dict[str, int] = field(default_factory=dict)
    _queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    _writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._drain(), name=f"writer-{self.connection_id}")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    def push(self, frame: str) -> None:
        """Queue a frame without waiting; a client this far behind is dropped rather than slowing others."""
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("dropping %s: %d frames behind", self.connection_id, QUEUE_LIMIT)
            _spawn(self.drop(CLOSE_TOO_SLOW))

    def offer(self, envelope: Envelope) -> None:
        """Deliver a tagged frame once per topic and attempt."""
        assert envelope.topic is not None and envelope.attempt is not None
        if not envelope.resend and self.topics.get(envelope.topic) == envelope.attempt:
            return
        self.topics[envelope.topic] = envelope.attempt
        self.push(envelope.frame)

    async def _drain(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                await self.send_frame(frame)
            except Exception:  # noqa: BLE001  (whatever the transport raises, the socket is gone)
                # Its handler's `finally` unregisters it.
                return


class Hub:
    def __init__(self, bus: Bus, channel: str) -> None:
        self._bus = bus
        self._channel = channel
        self._by_mechanic: dict[str, set[Connection]] = defaultdict(set)
        bus.subscribe(channel, self._on_envelope)

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self._by_mechanic.values())

    def connections_of(self, mechanic_id: str) -> set[Connection]:
        return self._by_mechanic.get(mechanic_id, set())

    def register(self, connection: Connection) -> None:
        self._by_mechanic[connection.mechanic_id].add(connection)
        CONNECTED_SOCKETS.inc()
        connection.start()

    async def unregister(self, connection: Connection) -> None:
        devices = self._by_mechanic.get(connection.mechanic_id)
        if devices is not None:
            if connection in devices:
                CONNECTED_SOCKETS.dec()
            devices.discard(connection)
            if not devices:
                del self._by_mechanic[connection.mechanic_id]
        await connection.stop()

    async def send(self, envelope: Envelope) -> None:
        """Deliver to the addressed connections on every process, this one included."""
        await self._bus.publish(self._channel, envelope.encode())

    async def disconnect(self, mechanic_id: str, close_code: int) -> None:
        """Close every device of a mechanic, on every process."""
        await self.send(Envelope(frame="", to=(mechanic_id,), close_code=close_code))

    async def _on_envelope(self, data: str) -> None:
        self.deliver_locally(Envelope.decode(data))

    def deliver_locally(self, envelope: Envelope) -> None:
        for connection in self._targets(envelope):
            if envelope.close_code is not None:
                _spawn(connection.drop(envelope.close_code))
            elif envelope.holders_of is not None:
                if envelope.holders_of not in connection.topics:
                    continue
                if envelope.release:
                    del connection.topics[envelope.holders_of]
                connection.push(envelope.frame)
            elif envelope.topic is not None:
                connection.offer(envelope)
            else:
                connection.push(envelope.frame)

    def _targets(self, envelope: Envelope) -> Iterable[Connection]:
        excluded = set(envelope.exclude)
        if envelope.to is None:
            mechanic_ids: Iterable[str] = list(self._by_mechanic)
        else:
            mechanic_ids = envelope.to
        for mechanic_id in mechanic_ids:
            if mechanic_id in excluded:
                continue
            yield from list(self._by_mechanic.get(mechanic_id, ()))
