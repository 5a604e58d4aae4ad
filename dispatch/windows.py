"""Priority windows as Redis keys: a key per open window whose `expired` event starts the fallback.

The database holds each deadline (the keeper makes it punctual); the key only makes every process hear the moment
at once. Keys can be lost (a Redis restart) and are rebuilt from the database.
"""

from __future__ import annotations

from base.clock import utc_now
from base.redis_client import RedisClient
from dispatch.keys import DispatchKeys
from dispatch.models import PRIORITY_ATTEMPT, SessionRequest


class Windows:
    def __init__(self, redis: RedisClient, keys: DispatchKeys) -> None:
        self._redis = redis
        self.keys = keys

    async def arm(self, request: SessionRequest) -> bool:
        """Set the window key to expire at the deadline; False when the deadline has already passed (Redis would
        answer such a key with a `del`, not `expired`)."""
        assert request.priority_deadline is not None
        if request.priority_deadline <= utc_now():
            return False
        # Round up: a key that expired a millisecond early would find the window still open.
        deadline_ms = int(request.priority_deadline.timestamp() * 1000) + 1
        await self._redis.set(self.keys.window(request.id, request.attempt), "1", pxat=deadline_ms)
        return True

    async def close(self, request_id: str, attempt: int = PRIORITY_ATTEMPT) -> None:
        await self._redis.delete(self.keys.window(request_id, attempt))
