"""Lua scripts: each changes several presence keys in one atomic round trip.

Every script's KEYS share one hash slot (a mechanic's keys and their shard's indexes carry the shard's tag, see
`keys.py`), so each runs on a Redis Cluster as on one Redis. Channels are passed in ARGV: they are not keys.
"""

from __future__ import annotations

# Refreshes a batch of devices (every heartbeat of one flush, or one device connecting).
# KEYS, six per device: online key, devices zset, routes hash, shard's last_seen hash, shard's dirty set, shard's
# online index (zset mechanic id -> presence expiry, for reading who is online)
# ARGV[1] now (ms), ARGV[2] presence TTL (ms), ARGV[3] route TTL (ms), ARGV[4] transitions channel, then two per
# device: mechanic id, connection id
# A connection id is `<process id>.<random>`: the routes hash keeps, per process holding the mechanic's sockets,
# until when it does, for the delivery floor.
# Returns one flag per device: 1 when it made the mechanic go online (and published that transition), else 0.
# One call for the batch instead of one per device is what keeps a heartbeat cheap for Redis and for the client.
TOUCH = """
local now, ttl, route_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local went_online = {}
for device = 0, #KEYS / 6 - 1 do
  local k, mechanic, connection = device * 6, ARGV[5 + device * 2], ARGV[6 + device * 2]
  local process = string.match(connection, '^([^.]+)%.')
  if process then
    redis.call('HSET', KEYS[k + 3], process, now + route_ttl)
    redis.call('PEXPIRE', KEYS[k + 3], route_ttl)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 2], '-inf', ARGV[1])
  local was_online = redis.call('EXISTS', KEYS[k + 1])
  redis.call('SET', KEYS[k + 1], ARGV[1], 'PX', ttl)
  redis.call('ZADD', KEYS[k + 2], now + ttl, connection)
  -- The devices set outlives the online key so that a crash's expiry can still claim it (see EXPIRED).
  redis.call('PEXPIRE', KEYS[k + 2], ttl * 2)
  redis.call('HSET', KEYS[k + 4], mechanic, ARGV[1])
  redis.call('SADD', KEYS[k + 5], mechanic)
  redis.call('ZADD', KEYS[k + 6], now + ttl, mechanic)
  went_online[device + 1] = 1 - was_online
  if was_online == 0 then
    redis.call('PUBLISH', ARGV[4], cjson.encode({mechanic_id = mechanic, is_online = true, at = now}))
  end
end
return went_online
"""

# KEYS: one device's six, as TOUCH. ARGV[1] mechanic id, ARGV[2] connection id, ARGV[3] now (ms), ARGV[4] transitions
# channel
# Removes one device; when none is left the mechanic is offline at once, and a process left with no device of
# theirs leaves the routes. Returns 1 if this call took them offline.
RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[2])
local process = string.match(ARGV[2], '^([^.]+)%.')
if process then
  local still_here = false
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if string.match(member, '^([^.]+)%.') == process then still_here = true end
  end
  if not still_here then redis.call('HDEL', KEYS[3], process) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[6], ARGV[1])
  if redis.call('DEL', KEYS[1]) == 1 then
    redis.call('PUBLISH', ARGV[4], cjson.encode({mechanic_id = ARGV[1], is_online = false, at = tonumber(ARGV[3])}))
    return 1
  end
end
return 0
"""

# KEYS[1] online key, KEYS[2] devices zset, KEYS[3] shard's online index, KEYS[4] shard's last_seen hash.
# ARGV[1] mechanic id, ARGV[2] now (ms), ARGV[3] transitions channel
# Called by every process that hears the online key expire (a crash): the DEL of the devices set decides which
# one publishes, so the offline transition goes out once, dated by the last heartbeat. Returns that date (ms)
# from the process that published, 0 elsewhere.
EXPIRED = """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('DEL', KEYS[2]) == 1 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  local seen = tonumber(redis.call('HGET', KEYS[4], ARGV[1])) or tonumber(ARGV[2])
  redis.call('PUBLISH', ARGV[3], cjson.encode({mechanic_id = ARGV[1], is_online = false, at = seen}))
  return seen
end
return 0
"""

# KEYS[1] a shard's dirty set, KEYS[2] its last_seen hash. ARGV[1] batch size
# Pops a batch of changed mechanics with their last_seen: a flat list id1, ms1, id2, ms2, ...
POP_DIRTY = """
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
if #ids == 0 then return {} end
local values = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = values[i] or false
end
return out
"""

# KEYS: the routes hashes of the addressed mechanics. ARGV[1] now (ms), ARGV[2] channel prefix, ARGV[3] message.
# The message is published once to each process that holds a socket of any of them (the delivery floor's routing
# directory), in one round trip. Returns how many processes. One Redis only: on a cluster the routes hashes lie in
# many slots and a shard channel must be published on its own node, so the tracker reads the routes and publishes
# itself.
ROUTE = """
local sent = {}
local count = 0
for _, key in ipairs(KEYS) do
  local routes = redis.call('HGETALL', key)
  for i = 1, #routes, 2 do
    local process = routes[i]
    if tonumber(routes[i + 1]) > tonumber(ARGV[1]) and not sent[process] then
      sent[process] = true
      count = count + 1
      redis.call('PUBLISH', ARGV[2] .. process, ARGV[3])
    end
  end
end
return count
"""
