"""uvicorn's protocols as favdispatch runs them: the one module that uses uvicorn's internals (its protocol
classes, `uvicorn._types`, `ClientDisconnected`), for the versions `require` names below.

What would let it go: uvicorn answering the handshake refusals websockets prepares (a `414`/`431` it now never
writes), bounding request heads under httptools, and a public way to write an already framed message; the
measurements that keep it are in docs/benchmarks.md (fan-out against `websockets.broadcast`, memory per socket).

## The WebSocket protocol: refused handshakes answered, less kept per idle socket

When websockets' parser refuses a handshake (a request line or a header over 8 KiB, such as an oversized token),
it prepares a `414`/`431` response, but uvicorn never writes it: the client waits for ever while the server holds
the connection. This writes the prepared response and closes, like any HTTP server refusing oversized headers.

A mechanic's socket stays open for hours, so what each one keeps matters: once the handshake is answered, its
request and response (with their headers) and the scope's copy of the headers are dropped, as nothing reads them
again (the app reads its token before accepting); and the messages waiting for the app sit in an `Inbox` rather
than an `asyncio.Queue`, whose four deques cost about 3 KiB per socket.

A frame going to many sockets is serialised once (`TextFrame`) and written as is to each transport
(`write_frame`): uvicorn's ASGI `send` would encode, frame and join it again for every socket, through a
coroutine per write, which made a broadcast cost half as much again as `websockets.broadcast`.

## The HTTP protocol: bounded heads, an access line an endpoint may leave out, streams told when to end

An endpoint that summarises its own traffic (the status poll, `api/poll_log.py`) tells the cycle answering it not
to write the response's access line (`skip_access_line`): uvicorn decides that per server, not per response.

A response of a head and one body is written to the socket in one write (`send_whole`): uvicorn's `send` writes
the head when the response starts and the body when it comes, two sends to the kernel and two TCP segments where
one does; on the status poll that second send was a tenth of the server's time.

A response that streams for hours (the customers' favorites stream) is told when its client goes away or the
server shuts down (`on_stream_end`): uvicorn would otherwise say so only to a task waiting on `receive`, one more
per stream, and keep a stream open through a shutdown until the graceful timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from base.versions import require

require("uvicorn", "0.54", "0.55", module=__name__)

__all__ = [
    "ClientDisconnected",
    "HttpProtocol",
    "TextFrame",
    "WebSocketProtocol",
    "on_stream_end",
    "send_whole",
    "skip_access_line",
]


class TextFrame:
    """A text frame as a server writes it (unmasked, no extension), serialised once for every socket it goes to."""

    __slots__ = ("payload", "wire")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload  # UTF-8
        self.wire = Frame(Opcode.TEXT, payload).serialize(mask=False)


class Inbox(asyncio.Queue[ASGIReceiveEvent]):
    """The part of `asyncio.Queue` uvicorn's protocol uses (`put_nowait`, `get`, `empty`), for its one reader."""

    def __init__(self) -> None:  # no super().__init__(): that is where the deques are made
        self._items: list[ASGIReceiveEvent] = []
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            del self.request, self.response
            self.scope["headers"] = []

    @property
    def writes_frames_as_is(self) -> bool:
        """An open socket with no extension negotiated (none is, with compression off): a serialised frame is what
        websockets would write for it."""
        return self.handshake_complete and not self.conn.extensions

    def write_frame(self, frame: TextFrame) -> bool:
        """Write now, as `send` does on an open socket; False, writing nothing, when the transport is paused (its
        client stopped reading). Raises `ClientDisconnected` once the socket is closing or gone, as `send` does
        (a transport being closed, which uvloop refuses to write to, before uvicorn has heard of it)."""
        if self.disconnected or self.close_sent or self.conn.state is not State.OPEN or self.transport.is_closing():
            raise ClientDisconnected()
        if not self.writable.is_set():
            return False
        self.transport.write(frame.wire)
        return True

    def data_received(self, data: bytes) -> None:
        if not self.handshake_complete:
            self.conn.receive_data(data)
            if self.conn.handshake_exc is not None:
                self.handshake_complete = True
                self.close_sent = True
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.transport.close()
                return
            if self.conn.parser_exc is not None:  # pragma: no cover
                self.handle_parser_exception()
                return
            self.handle_events()
            return
        super().data_received(data)


# The HTTP protocol: a bound on request heads.
#
# httptools sets no limit on the size of a request line or headers: one 20 MB header is buffered whole (twice)
# before the app sees anything. Like nginx and most servers, this refuses a head over `MAX_HEAD_BYTES` with `431`
# and closes the connection, counting bytes as they arrive so that memory stays bounded.

MAX_HEAD_BYTES = 64 * 1024
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\ncontent-length: 74\r\nconnection: close\r\n\r\n"
    b'{"error":"headers_too_large","message":"The request head is over 64 KiB."}'
)


class HttpProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _in_head = True  # until the first request's headers are complete

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > MAX_HEAD_BYTES:
                self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def shutdown(self) -> None:
        """A response still streaming when the server shuts down (a live stream: `on_stream_end`) is told to end
        now, so its client reconnects to another process at once rather than after the graceful timeout."""
        self._end_stream()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        """A streaming response whose client went away is told at once: uvicorn's `send` would drop what it writes
        without a word, and hearing `http.disconnect` would take a task per stream waiting on `receive`."""
        self._end_stream()
        super().connection_lost(exc)

    def _end_stream(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            end = cast("dict[str, Any]", cycle.scope).pop(_ON_END, None)
            if end is not None:
                end()


_ON_END = "favdispatch.on_end"  # a scope key: what `HttpProtocol` calls when a streaming response must end


def on_stream_end(scope: MutableMapping[str, Any], send: object, end: Callable[[], None]) -> bool:
    """Have `end` called once when the response about to stream through `send` (a cycle's ASGI send, as uvicorn
    passes it) must end: its client went away, or the server is shutting down. False under any other server (the
    caller must then listen for `http.disconnect` itself)."""
    cycle = getattr(send, "__self__", None)
    if not isinstance(cycle, RequestResponseCycle) or not isinstance(cycle.transport.get_protocol(), HttpProtocol):
        return False
    scope[_ON_END] = end
    return True


def skip_access_line(send: object) -> None:
    """The response about to start through `send` (a cycle's ASGI send) writes no access line. uvicorn reads
    `RequestResponseCycle.access_log` when the response starts; any other server's send is left as it is."""
    cycle = getattr(send, "__self__", None)
    if isinstance(cycle, RequestResponseCycle):
        cycle.access_log = False


class _Gathered:
    """Stands in for a cycle's transport while it answers: keeps what it writes, and whether it closed."""

    __slots__ = ("chunks", "closed")

    def __init__(self) -> None:
        self.chunks: list[bytes | memoryview] = []
        self.closed = False

    def write(self, data: bytes | memoryview) -> None:
        self.chunks.append(data)

    def close(self) -> None:
        self.closed = True


async def send_whole(
    send: Callable[[Any], Awaitable[None]], status: int, headers: list[tuple[bytes, bytes]], body: bytes | memoryview
) -> None:
    """A whole response (its head and its one body) through a cycle's ASGI `send`, written to the socket in one
    `transport.write`: uvicorn writes the head and the body apart, two sends to the kernel (and two TCP segments to
    the client) where one does. Under any other server, the two messages are sent as they are."""
    start = {"type": "http.response.start", "status": status, "headers": headers}
    end = {"type": "http.response.body", "body": body, "more_body": False}
    cycle = getattr(send, "__self__", None)
    if not isinstance(cycle, RequestResponseCycle):
        await send(start)
        await send(end)
        return
    transport, gathered = cycle.transport, _Gathered()
    cycle.transport = gathered  # type: ignore[assignment]
    try:
        await send(start)
        await send(end)
    finally:
        cycle.transport = transport
        # A client gone while `send` waited for it to read leaves a closed transport, which uvloop refuses to write to.
        if gathered.chunks and not transport.is_closing():
            transport.write(b"".join(gathered.chunks))
        if gathered.closed:
            transport.close()
