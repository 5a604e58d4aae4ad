"""Priority windows as Redis keys: a key per open window whose `expired` event starts the fallback.

The database holds each deadline and the keeper makes it punctual; the key only makes every process hear the
moment at once. So a key is a hint, never owed: one that Redis could not take (Redis away) or lost (a restart, a
failover) is rebuilt from the database when pub/sub rejoins, and the keeper's timers fire without it.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from base.clock import utc_now
from base.redis_client import RedisClient
from dispatch.keys import DispatchKeys
from dispatch.models import PRIORITY_ATTEMPT, SessionRequest

log = logging.getLogger(__name__)


class Windows:
    def __init__(self, redis: RedisClient, keys: DispatchKeys) -> None:
        self._redis = redis
        self.keys = keys

    async def arm(self, request: SessionRequest) -> bool:
        """Set the window key to expire at the deadline; False when the deadline has already passed (Redis would
        answer such a key with a `del`, not `expired`). Redis being away is not a failure (see above)."""
        assert request.priority_deadline is not None
        if request.priority_deadline <= utc_now():
            return False
        # Round up: a key that expired a millisecond early would find the window still open.
        deadline_ms = int(request.priority_deadline.timestamp() * 1000) + 1
        try:
            await self._redis.set(self.keys.window(request.id, request.attempt), "1", pxat=deadline_ms)
        except (RedisError, OSError) as error:
            log.warning("window key for %s not set (%r); the keeper's timer closes it", request.id, error)
        return True

    async def disarm(self, request_id: str, attempt: int = PRIORITY_ATTEMPT) -> None:
        """Drop a window's key; left in place when Redis is away, its expiry then finds the window closed."""
        try:
            await self._redis.delete(self.keys.window(request_id, attempt))
        except (RedisError, OSError) as error:
            log.warning("window key for %s not dropped (%r); its expiry will find it closed", request_id, error)
