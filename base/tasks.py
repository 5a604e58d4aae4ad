"""Follow-up work started off the path that asked for it (a callback cannot await), held until it ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()


def spawn(work: Awaitable[Any]) -> None:
    """Run `work` in a task of its own. The event loop keeps only weak references to tasks, so one is kept here
    until it ends; its failure is logged, never lost."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_ended)


def _ended(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("background step failed: %r", task.exception())
