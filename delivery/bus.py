"""One Redis pub/sub connection per process, shared by everyone who listens.

Handlers are registered per channel before `run()`; the loop reconnects and resubscribes with backoff when Redis
goes away, and tells `on_reconnect` callbacks so they can rebuild what a restarted Redis lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0

Handler = Callable[[str], Awaitable[None]]
ReconnectHook = Callable[[], Awaitable[None]]


class Bus:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._reconnect_hooks: list[ReconnectHook] = []
        self.is_subscribed = asyncio.Event()

    @property
    def expired_channel(self) -> str:
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        return f"__keyevent@{db}__:expired"

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    def on_reconnect(self, hook: ReconnectHook) -> None:
        self._reconnect_hooks.append(hook)

    async def publish(self, channel: str, message: str | bytes) -> None:
        await self._redis.publish(channel, message)

    async def enable_expiry_events(self) -> bool:
        """Turn on keyevent `expired` notifications, keeping flags already set. False where Redis refuses."""
        try:
            config = await self._redis.config_get("notify-keyspace-events")
            current: str = config.get("notify-keyspace-events") or ""
            flags = set(current)
            missing = ("" if "E" in flags else "E") + ("" if flags & {"x", "A"} else "x")
            if missing:
                await self._redis.config_set("notify-keyspace-events", current + missing)
            return True
        except RedisError as error:
            log.warning(
                "Redis refused CONFIG SET notify-keyspace-events (%s). Enable expired events on the server "
                "(notify-keyspace-events Ex, e.g. in your provider's parameter group); until then fallbacks are "
                "fired by the deadline keeper alone.",
                error,
            )
            return False

    async def run(self) -> None:
        """Receive forever; a handler's failure is logged and never stops the loop."""
        backoff = 0.1
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)
                self.is_subscribed.set()
                if not first:
                    log.info("pub/sub reconnected")
                    for hook in self._reconnect_hooks:
                        await hook()
                first = False
                backoff = 0.1
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    await self._deliver(message["channel"], message["data"])
            except (RedisError, OSError) as error:
                self.is_subscribed.clear()
                log.warning("pub/sub connection lost (%s); retrying in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                # Bounded and never awaited past the bound: closing a connection whose read was just cancelled
                # can otherwise wait forever and hold up shutdown.
                closing = asyncio.ensure_future(pubsub.aclose())  # type: ignore[no-untyped-call]
                closing.add_done_callback(lambda t: t.cancelled() or t.exception())
                await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_S)

    async def _deliver(self, channel: str, data: str) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                await handler(data)
            except Exception:
                log.exception("handler for %s failed", channel)
