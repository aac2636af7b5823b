//! The Lua scripts behind [`PoolIndex`](super::PoolIndex). Each runs
//! atomically in Redis. KEYS[1] is a pool list, KEYS[2] its sorted set of
//! recently popped ids (score: pop time in ms); both share a hash slot.
//! ARGV[1] is always how long a pop is remembered (ms); the scripts' own
//! arguments follow.

/// LPOP one id and remember it as popped. ARGV[2]: ids the pop must leave
/// listed (0: a request takes the last).
pub const POP: &str = r"
local leave = tonumber(ARGV[2])
if leave > 0 and redis.call('LLEN', KEYS[1]) <= leave then
  return false
end
local id = redis.call('LPOP', KEYS[1])
if id then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local keep = tonumber(ARGV[1])
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - keep)
  redis.call('PEXPIRE', KEYS[2], keep)
end
return id
";

/// A prefetch's batch: LPOP up to ARGV[3] ids, but never the last ARGV[2]
/// and at most half of those beyond them (at least one), and remember each
/// as popped. Returns the ids, head first.
pub const POP_AHEAD: &str = r"
local spare = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[2])
if spare <= 0 then
  return {}
end
local n = math.min(tonumber(ARGV[3]), math.max(1, math.floor(spare / 2)))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids, scored = {}, {}
for i = 1, n do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  ids[#ids + 1] = id
  scored[#scored + 1] = now
  scored[#scored + 1] = id
end
if #ids > 0 then
  local keep = tonumber(ARGV[1])
  redis.call('ZADD', KEYS[2], unpack(scored))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - keep)
  redis.call('PEXPIRE', KEYS[2], keep)
end
return ids
";

/// The ids popped within the pop memory, oldest first (`ZRANGE` through a
/// script: the sorted-set commands are not compiled into the client).
pub const POPPED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[2], now - tonumber(ARGV[1]), '+inf')
";

/// Put back an id whose claim rolled back: forget the pop, list it at the
/// head unless it is listed. ARGV[2]: the id.
pub const REQUEUE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('LPOS', KEYS[1], ARGV[2]) then
  return 0
end
return redis.call('LPUSH', KEYS[1], ARGV[2])
";

/// ARGV[2] = n; ARGV[3..n+2]: ids to remove; the rest: ids to append unless
/// listed or popped within the pop memory. Then one place per id. Returns
/// {removed, added, duplicates dropped}.
pub const RECONCILE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
local n = tonumber(ARGV[2])
local removed, added, dropped = 0, 0, 0
for i = 3, n + 2 do
  removed = removed + redis.call('LREM', KEYS[1], 0, ARGV[i])
end
for i = n + 3, #ARGV do
  local id = ARGV[i]
  if not redis.call('ZSCORE', KEYS[2], id) and not redis.call('LPOS', KEYS[1], id) then
    redis.call('RPUSH', KEYS[1], id)
    added = added + 1
  end
end
local seen = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if seen[id] then
    dropped = dropped + redis.call('LREM', KEYS[1], -1, id)
  else
    seen[id] = true
  end
end
return {removed, added, dropped}
";
