"""Socket delivery: the Redis bus, the hub of this process's sockets, envelopes and close codes.

Nothing here knows about bookings: an envelope names sockets by owner and topic, not by request or offer.
"""
