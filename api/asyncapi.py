"""The mechanics' socket, and the customers' favorites stream, as an AsyncAPI 3 document, built from the frame types
themselves (`dispatch/frames.py`, and the stream's event types in `api/schemas.py`) and the close codes
(`delivery/close_codes.py`): what `/openapi.json` is for HTTP, `/asyncapi.json` is for the socket, so app builders
can generate clients and validate frames with their own tools. `docs/protocol.md` says the same in prose (when to
send what); the suite checks this document against the AsyncAPI 3.0.0 schema.

Operations are the server's, as AsyncAPI reads them: it `receive`s each client frame and `send`s each server frame.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from api import schemas as http_schemas
from delivery.close_codes import MEANING
from dispatch import frames

SOCKET_PATH = "/ws/mechanic"
STREAM_PATH = "/api/customer/favorites/stream"
# The favorites stream's events (Server-Sent Events: the event's name, then its data as JSON).
STREAM_EVENTS: dict[str, tuple[type[msgspec.Struct], str]] = {
    "snapshot": (http_schemas.Favorites, "On connect (or a resume that cannot be served): every favorite, live."),
    "favorite": (http_schemas.Favorite, "A favorite added or changed: online, offline since when, members online."),
    "removed": (http_schemas.FavoriteRemoved, "A favorite removed (by the customer) or deleted (from the platform)."),
}
SCHEMA_REF = "#/components/schemas/{name}"


def _tag(frame: type[msgspec.Struct]) -> str:
    return str(msgspec.inspect.type_info(frame).tag)  # type: ignore[attr-defined]


def _summary(frame: type[msgspec.Struct]) -> str | None:
    return (frame.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ") or None


def _message(frame: type[msgspec.Struct]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": _tag(frame),
        "title": frame.__name__,
        "payload": {"$ref": SCHEMA_REF.format(name=frame.__name__)},
    }
    if summary := _summary(frame):
        message["summary"] = summary
    return message


def build(version: str) -> dict[str, Any]:
    client_frames: tuple[type[msgspec.Struct], ...] = get_args(frames.ClientFrame)
    server_frames: tuple[type[msgspec.Struct], ...] = get_args(frames.ServerFrame)
    everything = (*client_frames, *server_frames)
    stream_types = tuple(kind for kind, _ in STREAM_EVENTS.values())
    _, schemas = msgspec.json.schema_components((*everything, *stream_types), ref_template=SCHEMA_REF)
    messages = {_tag(frame): _message(frame) for frame in everything}
    channel_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    stream_messages = {
        f"stream_{event}": {
            "name": event,
            "title": kind.__name__,
            "summary": summary,
            "payload": {"$ref": SCHEMA_REF.format(name=kind.__name__)},
        }
        for event, (kind, summary) in STREAM_EVENTS.items()
    }

    def operation(frame: type[msgspec.Struct], action: str) -> dict[str, Any]:
        tag = _tag(frame)
        return {
            "action": action,
            "channel": {"$ref": "#/channels/mechanic"},
            "messages": [{"$ref": f"#/channels/mechanic/messages/{tag}"}],
            "summary": f"The server {'receives' if action == 'receive' else 'sends'} `{tag}`.",
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "favdispatch mechanics' socket and customers' favorites stream",
            "version": version,
            "description": (
                "A mechanic's app holds this socket: its heartbeats keep the mechanic online, and offers, "
                "answers and assignments arrive on it. JSON text frames, one object each, told apart by `type`. "
                f"Frames over {frames.MAX_FRAME_BYTES} bytes close the socket (1009). The rules (when to "
                "heartbeat, acks, what repeats after a fault) are in docs/protocol.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8000",
                "protocol": "ws",
                "description": "`make run`; behind TLS in production (`wss`).",
                "security": [
                    {"$ref": "#/components/securitySchemes/subprotocol"},
                    {"$ref": "#/components/securitySchemes/query"},
                ],
            },
            "http": {
                "host": "127.0.0.1:8000",
                "protocol": "http",
                "description": "The favorites stream; behind TLS in production (`https`).",
                "security": [
                    {"$ref": "#/components/securitySchemes/bearer"},
                    {"$ref": "#/components/securitySchemes/ticket"},
                ],
            },
        },
        "channels": {
            "mechanic": {
                "address": SOCKET_PATH,
                "servers": [{"$ref": "#/servers/local"}],
                "title": "A mechanic's device",
                "description": "Close codes the server sends: "
                + "; ".join(f"{int(code)}: {meaning}" for code, meaning in MEANING.items())
                + ".",
                "messages": channel_messages,
                "x-close-codes": {str(int(code)): meaning for code, meaning in MEANING.items()},
            },
            "favorites": {
                "address": STREAM_PATH,
                "title": "A customer's favorites, live",
                "description": "Server-Sent Events (`text/event-stream`), each with an `id`; reconnect with "
                "`Last-Event-ID` to be sent only what changed since. Comment lines keep it open. Authenticated "
                "with the bearer header or `?ticket=` (`POST /api/customer/stream-tickets`). See docs/protocol.md.",
                "servers": [{"$ref": "#/servers/http"}],
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in stream_messages},
            },
        },
        "operations": {
            **{f"receive_{_tag(f)}": operation(f, "receive") for f in client_frames},
            **{f"send_{_tag(f)}": operation(f, "send") for f in server_frames},
            **{
                name: {
                    "action": "send",
                    "channel": {"$ref": "#/channels/favorites"},
                    "messages": [{"$ref": f"#/channels/favorites/messages/{name}"}],
                    "summary": f"The server sends the `{message['name']}` event.",
                }
                for name, message in stream_messages.items()
            },
        },
        "components": {
            "schemas": schemas,
            "messages": {**messages, **stream_messages},
            "securitySchemes": {
                "subprotocol": {
                    "type": "httpApiKey",
                    "in": "header",
                    "name": "Sec-WebSocket-Protocol",
                    "description": "A mechanic's JWT as the subprotocol `bearer.<token>` (browsers can set no "
                    "other header); the server answers with the same subprotocol.",
                },
                "query": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The same JWT as `?token=`, for clients that cannot offer a subprotocol "
                    "(it is redacted from the server's logs).",
                },
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "ticket": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "ticket",
                    "description": "A one-minute ticket from `POST /api/customer/stream-tickets`, for `EventSource` "
                    "(which cannot send headers); valid for the stream only.",
                },
            },
        },
    }
