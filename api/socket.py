"""The mechanics' WebSocket endpoint, a plain ASGI app: authenticate, decode, call a use case, answer.

The handshake is always accepted so that an authentication failure reaches a browser as a close code (4401,
4403, 4404) rather than an HTTP rejection it cannot read. Apps send their token as the subprotocol
`bearer.<token>` (answered with that subprotocol), which keeps it out of URLs and access logs; `?token=` remains
for clients that cannot set a subprotocol. Bad frames get an `error` frame and the socket stays open; an
oversized frame is closed with 1009 by uvicorn (`ws_max_size`); a socket past its frame rate is closed with 4429
and one silent for `PRESENCE_TTL_S` with 4408 (`delivery.liveness`).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs

from redis.exceptions import RedisError

from api.auth import Principal, Role
from api.runtime import Services
from base.errors import FavdispatchError, InternalError, InvalidToken, MechanicNotFound, OfferUnavailable, ProtocolError
from delivery.close_codes import CloseCode
from delivery.hub import AsgiSend, Connection
from delivery.uvicorn_protocols import TextFrame
from dispatch import frames

log = logging.getLogger(__name__)

BEARER_PREFIX = "bearer."
HEARTBEAT_ACK = TextFrame(frames.encode(frames.HeartbeatAck()))  # serialised once for every heartbeat

Receive = Any
Scope = dict[str, Any]


def _token(scope: Scope) -> tuple[str | None, str | None]:
    """The token and the subprotocol to answer with (None when it came in the query string)."""
    for subprotocol in scope.get("subprotocols") or ():
        if subprotocol.startswith(BEARER_PREFIX):
            return subprotocol[len(BEARER_PREFIX) :], subprotocol
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return (values[0] if values else None), None


class MechanicSocket:
    async def __call__(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        svc: Services = scope["state"]["services"]
        if (await receive())["type"] != "websocket.connect":
            return
        token, subprotocol = _token(scope)
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if subprotocol is not None:
            accept["subprotocol"] = subprotocol
        await send(accept)
        code = await self._refusal(svc, token)
        if isinstance(code, CloseCode):
            await send({"type": "websocket.close", "code": code})
            return
        await self._serve(svc, code, receive, send)

    async def _refusal(self, svc: Services, token: str | None) -> CloseCode | Principal:
        try:
            principal = svc.tokens.verify(token)
        except InvalidToken:
            return CloseCode.UNAUTHORIZED
        if principal.role is not Role.MECHANIC:
            return CloseCode.FORBIDDEN
        try:
            await svc.mechanics.get(principal.sub)
        except MechanicNotFound:
            return CloseCode.MECHANIC_NOT_FOUND
        return principal

    async def _serve(self, svc: Services, principal: Principal, receive: Receive, send: AsgiSend) -> None:
        settings = svc.settings
        mechanic_id = principal.sub
        connection = Connection(svc.hub.new_connection_id(), mechanic_id, send)
        try:
            # Online before the welcome: an app that reads its status right after the welcome sees it online.
            await svc.presence.track(mechanic_id, connection.connection_id)
        except (RedisError, OSError) as error:
            log.warning("refusing %s: Redis unavailable (%s)", connection.connection_id, error)
            await send({"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER})
            return
        # The welcome goes out before the connection can be sent anything else, so it is always the first frame;
        # an offer published before `register` is not lost: `greet` reads it from the database afterwards.
        connection.push(
            frames.encode_text(
                frames.Welcome(
                    mechanic_id=mechanic_id,
                    heartbeat_interval_s=settings.heartbeat_interval_s,
                    presence_ttl_s=settings.presence_ttl_s,
                )
            )
        )
        svc.hub.register(connection)
        try:
            await svc.devices.greet(connection)
            # Watched for silence from here: time the server spent greeting is not the client's silence.
            svc.sockets.heard(connection)
            await self._receive_frames(svc, connection, receive)
        except (RedisError, OSError) as error:
            log.warning("closing %s: Redis unavailable (%s)", connection.connection_id, error)
            connection.close(CloseCode.TRY_AGAIN_LATER)
        finally:
            svc.hub.unregister(connection)
            svc.sockets.forget(connection)
            try:
                await svc.presence.untrack(mechanic_id, connection.connection_id)
            except (RedisError, OSError) as error:
                # The device stops counting when its presence TTL runs out.
                log.warning("could not release %s (%s)", connection.connection_id, error)

    async def _receive_frames(self, svc: Services, connection: Connection, receive: Receive) -> None:
        rate, burst = svc.settings.socket_frames_per_s, float(svc.settings.socket_frame_burst)
        allowance, last = burst, time.monotonic()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if connection.is_closed:
                continue  # closing: what is still in flight is not served
            svc.sockets.heard(connection)
            now = time.monotonic()
            allowance = min(burst, allowance + (now - last) * rate)
            last = now
            if allowance < 1:
                log.warning("closing %s: more than %s frames a second", connection.connection_id, rate)
                connection.close(CloseCode.TOO_MANY_FRAMES)
                continue
            allowance -= 1
            text = message.get("text")
            if text is None:
                connection.push(frames.error(ProtocolError("Frames must be text (JSON), not binary.")))
                continue
            await self._answer(svc, connection, text)

    async def _answer(self, svc: Services, connection: Connection, text: str) -> None:
        request_id: str | None = None
        try:
            frame = frames.decode(text)
            request_id = str(getattr(frame, "request_id", "")) or None
            await self._handle(svc, connection, frame)
        except FavdispatchError as error:
            connection.push(frames.error(error, request_id))
        except (RedisError, OSError):
            raise
        except Exception:
            log.exception("handling a frame from %s failed", connection.owner)
            connection.push(frames.error(InternalError(), request_id))

    async def _handle(self, svc: Services, connection: Connection, frame: frames.ClientFrame) -> None:
        mechanic_id = connection.owner
        match frame:
            case frames.Heartbeat():
                svc.presence.heartbeat(mechanic_id, connection.connection_id)
                connection.write(HEARTBEAT_ACK)
            case frames.Ack(offer_id=offer_id):
                await svc.dispatcher.ack(mechanic_id, offer_id)
            case frames.Accept(request_id=request_uuid, attempt=attempt):
                request_id = str(request_uuid)
                if attempt is None:
                    attempt = connection.topics.get(request_id)
                    if attempt is None:
                        raise OfferUnavailable(request_id=request_id)
                await svc.dispatcher.accept(mechanic_id, request_id, attempt, via=connection.connection_id)
                # Answered here, not through Redis: the winner learns it won even while Redis is away.
                connection.push(frames.encode_text(frames.Accepted(request_id=request_id)))
            case frames.Decline(request_id=request_uuid):
                request_id = str(request_uuid)
                await svc.dispatcher.decline(mechanic_id, request_id, via=connection.connection_id)
                connection.topics.pop(request_id, None)
                connection.push(frames.encode_text(frames.Declined(request_id=request_id)))
            case frames.GiveBack(request_id=request_uuid, reason=reason):
                request_id = str(request_uuid)
                await svc.dispatcher.give_back(mechanic_id, request_id, reason, via=connection.connection_id)
                connection.topics.pop(request_id, None)
                connection.push(frames.encode_text(frames.GivenBack(request_id=request_id)))
