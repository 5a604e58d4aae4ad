"""Who is online where: Redis presence keys, heartbeats, transitions and last_seen persistence.

Presence knows nothing of dispatch: it publishes online/offline transitions on a Redis channel and whoever
cares subscribes.
"""
