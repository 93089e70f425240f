"""The Redis key layout and the Lua scripts of ``RedisCounterStore`` (redis-py ``asyncio/lock.py``).

Key layout (every key comes from :func:`redis_key`)::

    <prefix>:{u:<user>}:c:<period.key>    STRING  spent micros of one user in one period
    <prefix>:{u:<user>}:p                 ZSET    pending charges: "<cost>:<request_id>" scored
                                                  by charged_at (epoch ms)
    <prefix>:{u:<user>}:r:<period.key>    HASH    reservation id -> amount micros
    <prefix>:{u:<user>}:rx:<period.key>   ZSET    reservation id scored by its expiry (epoch ms)
    <prefix>:lead:<name>                  STRING  leader lease: owner token, PX ttl

Rules
1. Every key of one user carries the hash tag ``{u:<user>}``, so all keys a script touches live in
   one Redis Cluster slot, and every key a script touches is passed in KEYS.
2. Time comes from the caller's ``Clock`` as ARGV (epoch milliseconds), never from Redis ``TIME``:
   the store then follows an injected fake clock in tests, and replicas agree with the time the
   rest of the process uses. Key TTLs are relative (``PEXPIRE``/``PX``) and only collect garbage;
   correctness never depends on them.
3. A reservation is live while ``now_ms < expiry_ms``; an expired one never counts and is pruned by
   the next ``RESERVE`` of that user and period.
4. Counter TTL is ``period end + grace - now``; a TTL <= 0 means the period is long over, and the
   script leaves (CHARGE) or deletes (REBASE) its counter.
5. Lua numbers are doubles: amounts stay exact below 2**53 micros ($9 billion). Totals are written
   back with ``string.format('%d')`` because Redis would render a large double as ``1e+15``.
"""

from __future__ import annotations

__all__ = ["CHARGE", "LEAD", "READ", "REBASE", "RELEASE", "RESERVE", "redis_key"]


def redis_key(prefix: str, user_id: int | None, *parts: str) -> str:
    """The one place Redis key names are made (layout in the module docstring).

    ``user_id`` None makes a global key (the leader lease); otherwise the key carries the user's
    hash tag.
    """
    tag = () if user_id is None else (f"{{u:{user_id}}}",)
    return ":".join((prefix, *tag, *parts))


# KEYS[1..3] day, week and month counters containing charged_at
# KEYS[4]    the user's pending ZSET
# KEYS[5..6] (optional) amounts HASH and expiries ZSET of the reservation this charge settles
# ARGV[1]    cost micros
# ARGV[2]    pending member "<cost>:<request_id>"
# ARGV[3]    charged_at, epoch ms
# ARGV[4..6] TTL ms of the day, week and month counters (<= 0: period over, skip that counter)
# ARGV[7]    TTL ms of the pending ZSET
# ARGV[8]    (with KEYS[5..6]) reservation id to release
# return     1
CHARGE = """
for i = 1, 3 do
  local ttl = tonumber(ARGV[3 + i])
  if ttl > 0 then
    redis.call('INCRBY', KEYS[i], ARGV[1])
    redis.call('PEXPIRE', KEYS[i], ARGV[3 + i])
  end
end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
if #KEYS == 6 then
  redis.call('HDEL', KEYS[5], ARGV[8])
  redis.call('ZREM', KEYS[6], ARGV[8])
end
return 1
"""

# KEYS[1] counter, KEYS[2] reservation amounts HASH, KEYS[3] reservation expiries ZSET
# ARGV[1] now, epoch ms
# ARGV[2] reservation id
# ARGV[3] amount micros
# ARGV[4] limit micros, or "" for no limit
# ARGV[5] reservation TTL ms (>= 1)
# return  {admitted 0|1, spent micros, reserved micros before this reservation}
RESERVE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[2])) do
  reserved = reserved + tonumber(amount)
end
local admitted = ARGV[4] == '' or spent + reserved < tonumber(ARGV[4])
if admitted then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[3], tonumber(ARGV[1]) + tonumber(ARGV[5]), ARGV[2])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
  end
end
return {admitted and 1 or 0, spent, reserved}
"""

# KEYS[1] counter, KEYS[2] reservation amounts HASH, KEYS[3] reservation expiries ZSET
# ARGV[1] now, epoch ms
# return  {spent micros, reserved micros of live reservations}; writes nothing
READ = """
local spent = redis.call('GET', KEYS[1]) or '0'
local reserved = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')) do
  reserved = reserved + tonumber(redis.call('HGET', KEYS[2], id) or '0')
end
return {spent, reserved}
"""

# KEYS[1] reservation amounts HASH, KEYS[2] reservation expiries ZSET
# ARGV[1] reservation id
# return  1 if the reservation was held, else 0 (releasing twice is harmless)
RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# KEYS[1]    the user's pending ZSET
# KEYS[2..n] counters to set
# ARGV[1]    drop pending charges scored below this (epoch ms: now - pending max age)
# ARGV[4i-6 .. 4i-3] for KEYS[i], i >= 2: ledger total micros, period start ms, period end ms,
#            counter TTL ms (<= 0: period over, delete the counter)
# return     number of pending charges kept
REBASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for i = 2, #KEYS do
  local at = 4 * i - 6
  local total = tonumber(ARGV[at])
  local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[at + 1], '(' .. ARGV[at + 2])
  for _, member in ipairs(members) do
    total = total + tonumber(string.sub(member, 1, string.find(member, ':', 1, true) - 1))
  end
  if tonumber(ARGV[at + 3]) > 0 then
    redis.call('SET', KEYS[i], string.format('%d', total), 'PX', ARGV[at + 3])
  else
    redis.call('DEL', KEYS[i])
  end
end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1] the lease
# ARGV[1] this store's owner token
# ARGV[2] lease TTL ms
# return  1 if this owner holds the lease now (taken or renewed), else 0
LEAD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""
