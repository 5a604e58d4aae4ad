"""This process's sockets, and delivery of envelopes to them from any process.

An `Envelope` for everyone (a broadcast, a revocation to whoever holds an offer, a close) is published on the
shared channel that every process hears. One for named mechanics goes only to the processes that hold their
devices, on each process's own channel: a connection id starts with its process's id, and the presence floor
keeps each mechanic's routes from their heartbeats (`route`, wired in by the runtime). Routes outlive presence,
so a socket whose heartbeats run late still gets its frames, and a process that dies leaves no route once they
lapse. Each process hands what it hears from others to the local sockets it addresses, and writes its own
envelopes to its sockets itself instead of waiting for Redis's echo (a round trip and a wake-up less on the way to
them; they do not wait for Redis at all where a second delivery would change nothing).

A frame is encoded and serialised once per envelope and written to each socket's transport without waiting: no
task and no queue per socket. uvicorn's protocol writes synchronously while its transport is below the write-buffer
high-water mark; a socket whose write would have to wait is a client that stopped reading, and its TCP
connection is cut (a close frame could not reach it either) instead of holding up anyone else or growing without
bound (websockets' broadcast topic: "there's no backpressure").
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from delivery.bus import Bus
from delivery.close_codes import CloseCode
from delivery.envelope import Envelope, decode_envelope, delivers_once, encode_envelope
from delivery.metrics import CONNECTED_SOCKETS, SLOW_CLIENTS_DROPPED
from delivery.uvicorn_protocols import ClientDisconnected, TextFrame, WebSocketProtocol

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]
# Publishes a message to the channel `{prefix}{process}` of each process holding a device of these owners.
Route = Callable[[tuple[str, ...], str, bytes], Awaitable[int]]

_closing: set[asyncio.Task[None]] = set()


class Connection:
    """One device's socket as the hub sees it: its owner, the topics it holds, and a write that never waits."""

    __slots__ = ("_send", "_writer", "connection_id", "is_closed", "owner", "topics")

    def __init__(self, connection_id: str, owner: str, send: AsgiSend) -> None:
        """`send`: the socket's ASGI send, once the socket is accepted."""
        self.connection_id = connection_id
        self.owner = owner
        self.topics: dict[str, int] = {}
        self.is_closed = False
        self._send = send
        protocol = getattr(send, "__self__", None)
        self._writer = protocol if isinstance(protocol, WebSocketProtocol) and protocol.writes_frames_as_is else None

    def push(self, frame: str | TextFrame) -> None:
        """Write a frame now, without waiting (see `write`)."""
        self.write(frame if isinstance(frame, TextFrame) else TextFrame(frame.encode()))

    def write(self, frame: TextFrame) -> None:
        """Write a frame now, without waiting: straight to the transport when uvicorn serves the socket with our
        protocol, else by an ASGI send that completes without suspending unless the transport is paused. A
        broadcast calls this once per socket, so it does no more than that."""
        if self.is_closed:
            return
        writer = self._writer
        if writer is not None:
            try:
                if writer.write_frame(frame):
                    return
            except ClientDisconnected:  # the socket handler's `finally` cleans up
                self.is_closed = True
                return
        elif self._sent_at_once(frame):
            return
        log.warning("dropping %s: it stopped reading its socket", self.connection_id)
        SLOW_CLIENTS_DROPPED.inc()
        self._abort()

    def _sent_at_once(self, frame: TextFrame) -> bool:
        """Another ASGI server: its send, stepped once. False when it would have to wait."""
        step = self._send({"type": "websocket.send", "text": frame.payload.decode()})
        try:
            step.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return True
        except Exception:  # noqa: BLE001  (the transport is gone: the socket handler's `finally` cleans up)
            self.is_closed = True
            return True
        step.close()  # type: ignore[attr-defined]
        return False

    def offer(self, frame: TextFrame, topic: str, version: int, *, repeat: bool = False) -> None:
        """Deliver a frame once per topic and version (unless `repeat`), and remember the topic as held."""
        if not repeat and self.topics.get(topic) == version:
            return
        self.topics[topic] = version
        self.write(frame)

    def close(self, code: int) -> None:
        """Start a closing handshake without waiting for it (bounded: a peer that never answers is cut)."""
        if self.is_closed:
            return
        self.is_closed = True
        task = asyncio.ensure_future(self._close(code))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close(self, code: int) -> None:
        try:
            await asyncio.wait_for(self._send({"type": "websocket.close", "code": code}), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._abort()
        except Exception:  # noqa: BLE001  (already closed by the peer)
            pass

    def _abort(self) -> None:
        """Cut the TCP connection: a client that does not read would never take a close frame either."""
        self.is_closed = True
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
        else:  # another ASGI server: the closing handshake, bounded, is the best we can do
            task = asyncio.ensure_future(self._close(CloseCode.TRY_AGAIN_LATER))
            _closing.add(task)
            task.add_done_callback(_closing.discard)


class Hub:
    def __init__(self, bus: Bus, channel: str, route: Route | None = None) -> None:
        """`route` None: every envelope goes to every process (the way before routing, kept to compare)."""
        self._bus = bus
        self._channel = channel
        self._route = route
        self.process_id = uuid.uuid4().hex[:12]
        self._by_owner: dict[str, set[Connection]] = defaultdict(set)
        self._everyone: dict[Connection, None] = {}  # the same connections, flat: a broadcast copies it at C speed
        self._others_listen = True  # whether other processes heard the last envelope for everyone
        bus.subscribe(channel, self._on_envelope)
        bus.subscribe(self._own_channel_prefix + self.process_id, self._on_envelope)

    @property
    def _own_channel_prefix(self) -> str:
        return f"{self._channel}:"

    def new_connection_id(self) -> str:
        """A connection id that names this process, which is what routes envelopes here."""
        return f"{self.process_id}.{uuid.uuid4().hex}"

    def register(self, connection: Connection) -> None:
        self._by_owner[connection.owner].add(connection)
        self._everyone[connection] = None
        CONNECTED_SOCKETS.inc()

    def unregister(self, connection: Connection) -> None:
        connection.is_closed = True
        devices = self._by_owner.get(connection.owner)
        if devices is None or connection not in devices:
            return
        CONNECTED_SOCKETS.dec()
        devices.discard(connection)
        del self._everyone[connection]
        if not devices:
            del self._by_owner[connection.owner]

    def connections(self) -> list[Connection]:
        """A snapshot of this process's open sockets."""
        return [c for c in self._everyone if not c.is_closed]

    def find(self, owner: str, connection_id: str) -> Connection | None:
        return next((c for c in self._by_owner.get(owner, ()) if c.connection_id == connection_id), None)

    async def publish(self, envelope: Envelope) -> int | None:
        """Deliver to the addressed sockets on every process, this one included: through the processes that hold
        the addressed mechanics' devices, or everyone's channel for a broadcast or a close (a close must reach a
        device even after its presence is gone). Routed, how many processes hold a device of the addressed (0: none
        has one); else None.

        This process's own sockets are written here, not through Redis's echo: at once where a second delivery
        would change nothing (so they have it even while Redis is away), else once the publish went out (a failed
        publish is retried whole). An envelope for everyone goes out first while other processes listen: writing
        thousands of local sockets first would hold up theirs (Redis away, it is then written here all the same)."""
        envelope = msgspec.structs.replace(envelope, origin=self.process_id)
        encoded = encode_envelope(envelope)
        routed_to = None if envelope.close_code is not None or self._route is None else envelope.to
        once = delivers_once(envelope)
        early = once and not (routed_to is None and self._others_listen)
        if early:
            self.deliver_locally(envelope)
        published = False
        try:
            if routed_to is None or self._route is None:
                self._others_listen = await self._bus.publish(self._channel, encoded) > 1
                reached = None
            else:
                reached = await self._route(routed_to, self._own_channel_prefix, encoded)
            published = True
        finally:
            if not early and (published or once):
                self.deliver_locally(envelope)
        return reached

    async def disconnect(self, owner: str, close_code: int) -> None:
        """Close every socket of an owner, on every process."""
        await self.publish(Envelope(to=(owner,), close_code=close_code))

    async def _on_envelope(self, data: bytes | str) -> None:
        envelope = decode_envelope(data)
        if envelope.origin != self.process_id:  # its own were delivered as they were published
            self.deliver_locally(envelope)

    def deliver_locally(self, envelope: Envelope) -> None:
        """What to do is decided once per envelope, not once per socket: a broadcast's loop runs thousands of times."""
        targets = self._targets(envelope)
        if envelope.close_code is not None:
            for connection in targets:
                connection.close(envelope.close_code)
            return
        frame = TextFrame(bytes(envelope.frame))
        topic, version, held, repeat = envelope.topic, envelope.version, envelope.to_holders_of, envelope.repeat
        if held is not None:
            for connection in targets:
                if held in connection.topics:
                    if envelope.release:
                        del connection.topics[held]
                    connection.write(frame)
        elif topic is not None and version is not None:
            for connection in targets:
                connection.offer(frame, topic, version, repeat=repeat)
        else:
            for connection in targets:
                connection.write(frame)

    def _targets(self, envelope: Envelope) -> list[Connection]:
        """A snapshot: writing may end a connection, and its unregistering must not disturb the loop."""
        excluded = set(envelope.exclude)
        if envelope.to is None:
            if not excluded:
                return list(self._everyone)
            return [c for c in self._everyone if c.owner not in excluded]
        skip = envelope.skip_connection
        return [
            c
            for owner in envelope.to
            if owner not in excluded
            for c in self._by_owner.get(owner, ())
            if c.connection_id != skip
        ]
