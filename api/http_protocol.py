"""uvicorn's httptools protocol with a bound on request heads.

httptools sets no limit on the size of a request line or headers: one 20 MB header is buffered whole (twice) before
the app sees anything. Like nginx and most servers, this refuses a head over `MAX_HEAD_BYTES` with `431` and
closes the connection, counting bytes as they arrive so that memory stays bounded.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
