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


# Charges of ONE user (every key carries that user's hash tag), summed per counter by the caller.
# KEYS[1]            the user's pending ZSET
# KEYS[2 .. 1+c]     counters to add to (c = ARGV[1])
# KEYS[2+c ..]       pairs: amounts HASH and expiries ZSET of reservations these charges settle
# ARGV[1]            c, the number of counters
# ARGV[2]            TTL ms of the pending ZSET
# ARGV[3]            m, the number of pending members (>= 1)
# ARGV[4 .. 3+2c]    per counter: micros to add, TTL ms (<= 0: period over, leave that counter)
# next 2m            per pending member: charged_at epoch ms, member "<cost>:<request_id>"
# then, per pair     n, then the n reservation ids to release
# return             1
CHARGE = """
local c = tonumber(ARGV[1])
local m = tonumber(ARGV[3])
for i = 1, c do
  local ttl = tonumber(ARGV[3 + 2 * i])
  if ttl > 0 then
    redis.call('INCRBY', KEYS[1 + i], ARGV[2 + 2 * i])
    redis.call('PEXPIRE', KEYS[1 + i], ttl)
  end
end
local at = 4 + 2 * c
redis.call('ZADD', KEYS[1], unpack(ARGV, at, at + 2 * m - 1))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
at = at + 2 * m
for k = 2 + c, #KEYS, 2 do
  local n = tonumber(ARGV[at])
  redis.call('HDEL', KEYS[k], unpack(ARGV, at + 1, at + n))
  redis.call('ZREM', KEYS[k + 1], unpack(ARGV, at + 1, at + n))
  at = at + n + 1
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
