"""The deadlines of open priority requests, as the use cases and the keeper share them.

The use cases post on a `DeadlineBoard` the deadlines they arm (a booking, an offer marked sent, a resend) and the
ones they meet (an ack, an accept, a fallback, a cancel); the keeper takes them from the board and keeps the
timers. The keeper acts through `Deadlines`, the use cases it may call: the whole of what it knows of dispatch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

DeadlineKind = Literal["window", "ack"]

Clock = tuple[str, str, int]
"""A deadline's kind, request and attempt: what stops it, whatever its due time and resends."""


@dataclass(frozen=True)
class Deadline:
    kind: str  # "window" or "ack"
    request_id: str
    attempt: int
    resends: int
    due_epoch: float

    @property
    def clock(self) -> Clock:
        return (self.kind, self.request_id, self.attempt)


class DeadlineBoard:
    """Deadlines armed and met in this process since the keeper last looked, and an event set with each post."""

    def __init__(self) -> None:
        self._armed: list[Deadline] = []
        self._met: list[Clock] = []
        self.changed = asyncio.Event()

    def arm(self, *deadlines: Deadline) -> None:
        self._armed += deadlines
        self.changed.set()

    def meet(self, request_id: str, attempt: int, *kinds: str) -> None:
        self._met += [(kind, request_id, attempt) for kind in kinds]
        self.changed.set()

    def take(self) -> tuple[list[Deadline], list[Clock]]:
        """Everything posted since the last call."""
        taken = self._armed, self._met
        self._armed, self._met = [], []
        return taken


class Deadlines(Protocol):
    """The use cases the keeper drives deadlines through."""

    @property
    def board(self) -> DeadlineBoard: ...

    async def due_before(self, horizon: datetime, limit: int) -> list[Deadline]:
        """Windows and ack clocks of open priority requests falling due before `horizon`."""

    async def close_window(self, request_id: str, attempt: int) -> None:
        """The window's deadline passed: fall back (the database lets one process do it)."""

    async def resend_or_fall_back(self, request_id: str, attempt: int) -> None:
        """The priority offer's ack is overdue."""

    async def rearm_windows(self) -> int:
        """Rebuild every open window's Redis key from the database; the number of windows."""

    def window_of(self, key: str) -> tuple[str, int] | None:
        """The request and attempt a window key names, None for any other key."""
