"""The mechanics' socket as an AsyncAPI 3 document, built from the frame types themselves (`dispatch/frames.py`)
and the close codes (`delivery/close_codes.py`): what `/openapi.json` is for HTTP, `/asyncapi.json` is for the
socket, so app builders can generate clients and validate frames with their own tools. `docs/protocol.md` says
the same in prose (when to send what); the suite checks this document against the AsyncAPI 3.0.0 schema.

Operations are the server's, as AsyncAPI reads them: it `receive`s each client frame and `send`s each server frame.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from delivery.close_codes import MEANING
from dispatch import frames

SOCKET_PATH = "/ws/mechanic"
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
    _, schemas = msgspec.json.schema_components(everything, ref_template=SCHEMA_REF)
    messages = {_tag(frame): _message(frame) for frame in everything}
    channel_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}

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
            "title": "favdispatch mechanics' socket",
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
            }
        },
        "channels": {
            "mechanic": {
                "address": SOCKET_PATH,
                "title": "A mechanic's device",
                "description": "Close codes the server sends: "
                + "; ".join(f"{int(code)}: {meaning}" for code, meaning in MEANING.items())
                + ".",
                "messages": channel_messages,
                "x-close-codes": {str(int(code)): meaning for code, meaning in MEANING.items()},
            }
        },
        "operations": {
            **{f"receive_{_tag(f)}": operation(f, "receive") for f in client_frames},
            **{f"send_{_tag(f)}": operation(f, "send") for f in server_frames},
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
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
            },
        },
    }
