"""The mechanics' WebSocket endpoint: authenticate, decode, call the domain, encode. Nothing else.

The handshake is always accepted so that an authentication failure reaches a browser as a close code (4401,
4403, 4404) rather than an HTTP rejection it cannot read. Bad frames get an `error` frame and the socket stays
open; an oversized frame is closed with 1009 by uvicorn (`ws_max_size`).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.auth import InvalidToken, Role, decode_token
from api.context import services
from dispatch import protocol
from dispatch.errors import DomainError, InternalError, MechanicNotFound
from dispatch.protocol import CloseCode
from presence.hub import Connection
from presence.metrics import HEARTBEATS

if TYPE_CHECKING:
    from api.app import Services

log = logging.getLogger(__name__)


async def mechanic_socket(websocket: WebSocket) -> None:
    svc = services(websocket)
    await websocket.accept()
    try:
        principal = decode_token(websocket.query_params.get("token"), str(svc.settings.jwt_secret))
    except InvalidToken:
        await websocket.close(CloseCode.UNAUTHORIZED)
        return
    if principal.role is not Role.MECHANIC:
        await websocket.close(CloseCode.FORBIDDEN)
        return
    try:
        mechanic = await svc.mechanics.get(principal.sub)
    except MechanicNotFound:
        await websocket.close(CloseCode.MECHANIC_NOT_FOUND)
        return

    async def close(code: int) -> None:
        if websocket.application_state is WebSocketState.CONNECTED:
            try:
                await websocket.close(code)
            except RuntimeError:
                pass  # already closing

    connection = Connection(
        connection_id=uuid.uuid4().hex, mechanic_id=mechanic.id, send_frame=websocket.send_text, drop=close
    )
    settings = svc.settings
    # The welcome is queued before the connection can receive anything else, so it is always the first frame.
    connection.push(protocol.welcome(mechanic.id, settings.heartbeat_interval_s, settings.presence_ttl_s))
    svc.hub.register(connection)
    try:
        await svc.presence.track(mechanic.id, connection.connection_id)
        await svc.dispatcher.deliver_pending(connection)
        await _serve(websocket, svc, connection)
    except WebSocketDisconnect:
        pass
    except (RedisError, OSError) as error:
        log.warning("closing %s: Redis unavailable (%s)", connection.connection_id, error)
        await close(CloseCode.TRY_AGAIN_LATER)
    finally:
        await svc.hub.unregister(connection)
        try:
            await svc.presence.untrack(mechanic.id, connection.connection_id)
        except (RedisError, OSError) as error:
            # The device stops counting when its presence TTL runs out.
            log.warning("could not release %s (%s)", connection.connection_id, error)


async def _serve(websocket: WebSocket, svc: Services, connection: Connection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        frame = message.get("text")
        if frame is None:
            frame = message.get("bytes") or b""
        request_id = None
        try:
            decoded = protocol.decode(frame)
            request_id = getattr(decoded, "request_id", None)
            await _handle(svc, connection, decoded)
        except DomainError as error:
            connection.push(protocol.error(error, request_id))
        except Exception:
            log.exception("handling a frame from %s failed", connection.mechanic_id)
            connection.push(protocol.error(InternalError(), request_id))


async def _handle(svc: Services, connection: Connection, message: protocol.ClientMessage) -> None:
    match message:
        case protocol.Heartbeat():
            svc.presence.heartbeat(connection.mechanic_id, connection.connection_id)
            HEARTBEATS.inc()
            connection.push(protocol.heartbeat_ack())
        case protocol.Ack(offer_id=offer_id):
            await svc.dispatcher.ack(connection.mechanic_id, offer_id)
        case protocol.Accept(request_id=request_id, attempt=attempt):
            await svc.dispatcher.accept(connection, request_id, attempt)
        case protocol.Decline(request_id=request_id):
            await svc.dispatcher.decline(connection, request_id)
        case protocol.GiveBack(request_id=request_id, reason=reason):
            await svc.dispatcher.give_back(connection.mechanic_id, request_id, reason)


routes = [WebSocketRoute("/ws/mechanic", mechanic_socket)]
