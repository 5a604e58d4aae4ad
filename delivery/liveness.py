"""Silent sockets are dead sockets: one sweep per process closes those that sent nothing for a whole TTL.

A phone that lost its radio or a half-open TCP connection keeps a socket open for ever while its presence
expires; two views of one mechanic would then disagree. Any frame counts as life. The registry keeps sockets in
the order they were last heard from (an ordered dict moved-to-end on every frame), so a sweep looks only at the
silent ones at its front: O(1) per frame, O(expired) per tick, no task or timer per socket.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from delivery.close_codes import CloseCode
from delivery.hub import Connection

SilentHook = Callable[[Connection, float], None]  # the socket, and how long it was silent (s)


class SocketRegistry:
    def __init__(self, silence_s: float) -> None:
        self._silence_s = silence_s
        self._tick_s = min(1.0, silence_s / 4)
        self._heard: OrderedDict[Connection, float] = OrderedDict()
        self._on_silent: list[SilentHook] = []

    @property
    def sweep_s(self) -> float:
        """How often silent sockets are looked for: a silent device is offline within the TTL and this."""
        return self._tick_s

    def on_silent(self, hook: SilentHook) -> None:
        """Called for each socket the sweep closes, with how long it was silent (e.g. to release its presence at
        once)."""
        self._on_silent.append(hook)

    def heard(self, connection: Connection) -> None:
        self._heard[connection] = time.monotonic()
        self._heard.move_to_end(connection)

    def forget(self, connection: Connection) -> None:
        self._heard.pop(connection, None)

    def sweep(self) -> int:
        """Close every socket silent for the whole TTL; returns how many."""
        now = time.monotonic()
        cutoff = now - self._silence_s
        closed = 0
        while self._heard:
            connection, last = next(iter(self._heard.items()))
            if last > cutoff:
                break
            del self._heard[connection]
            connection.close(CloseCode.PRESENCE_TIMEOUT)
            for hook in self._on_silent:
                hook(connection, now - last)
            closed += 1
        return closed

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.sweep()
