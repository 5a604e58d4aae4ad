"""uvicorn's sans-I/O WebSocket protocol, with a refused handshake answered instead of left hanging.

When websockets' parser refuses a handshake (a request line or a header over 8 KiB, such as an oversized token),
it prepares a `414`/`431` response, but uvicorn never writes it: the client waits for ever while the server holds
the connection. This writes the prepared response and closes, like any HTTP server refusing oversized headers.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
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
