"""``RedisCounterStore``: the shared ``CounterStore`` for many processes and machines (SPEC §8).

Key layout and scripts: ``limits/store/redis_scripts.py``.

Rules
1. One round trip per call. Each operation is one command (a plain ``GET`` for
   :meth:`~RedisCounterStore.read_spent`, else one EVALSHA); a batch of charges is one EVALSHA
   per user (rule 8), and several users' EVALSHAs go in one non-transactional pipeline: atomic
   per user, not per batch, as the port asks. ``reserve`` and ``release`` calls made in the
   same turn of the event loop share one pipeline (``ScriptBatcher``), each still one atomic
   EVALSHA: under concurrency, one write and one read serve them all.
2. Scripts are called by SHA and reloaded on NOSCRIPT, and no ``redis`` exception leaves this
   package: ``limits/store/redis_calls.py`` (so a FLUSHALL, SCRIPT FLUSH or a restarted, empty
   Redis needs nothing from the caller).
4. A dead Redis must not hang a request: short connect/read timeouts, a bounded pool that waits
   at most as long for a free connection, and one immediate retry on ``ConnectionError`` only
   (a stale pooled connection after a restart). A timeout is never retried: the script may have
   run, and a retried CHARGE would count twice.
5. Time comes from the injected ``Clock`` and is passed to Lua as ARGV (see redis_scripts rule 2).
6. The store owns its client: :meth:`RedisCounterStore.close` closes it, also an injected one.
7. A charge reaches Redis in ONE round trip (a single EVALSHA, or one pipeline of them), never
   behind a ``SCRIPT EXISTS``: until it lands, admissions read a counter without it (mode
   ``check``), so every round trip here widens the overspend window. A NOSCRIPT answer means
   the script did not run: the script is loaded and only those calls are sent again.
8. A batch is grouped per user and summed per counter before it is sent: one ``CHARGE`` adds a
   user's charges to each of their day/week/month counters with one INCRBY, records every
   charge as pending with one ZADD and releases the reservations they settle. At most
   ``_CHARGES_PER_CALL`` charges go in one call, to keep the script's argument lists short.
"""

from __future__ import annotations

import math
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from limits.periods import BoundsCache, Period, PeriodKind
from limits.ports import Charge, Clock
from limits.store import redis_scripts
from limits.store.redis_calls import (
    LuaScript,
    ScriptBatcher,
    eval_many,
    eval_script,
    map_exceptions,
    store_error,
)
from limits.store.redis_scripts import redis_key

__all__ = ["COUNTER_GRACE_S", "PENDING_TTL_S", "RedisCounterStore", "map_exceptions"]

COUNTER_GRACE_S = 86_400.0
"""A counter outlives its period by this much (late charges, status of the previous period)."""

PENDING_TTL_S = 2 * 86_400.0
"""A user's pending set expires this long after their last charge (garbage collection only)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_CHARGES_PER_CALL = 100  # rule 8

_KeysArgs = tuple[list[str], list[str | int]]  # KEYS and ARGV of one EVALSHA

_CHARGE = LuaScript.of(redis_scripts.CHARGE)
_RESERVE = LuaScript.of(redis_scripts.RESERVE)
_READ = LuaScript.of(redis_scripts.READ)
_RELEASE = LuaScript.of(redis_scripts.RELEASE)
_REBASE = LuaScript.of(redis_scripts.REBASE)
_LEAD = LuaScript.of(redis_scripts.LEAD)


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the Unix epoch, rounded down (``at`` is timezone-aware)."""
    return (at - _EPOCH) // _MS


def _ttl_ms(ttl_s: float) -> int:
    """A TTL in whole milliseconds, at least 1 (Redis rejects 0)."""
    return max(1, math.ceil(ttl_s * 1000))


def _pending_member(charge: Charge) -> str:
    # The cost leads: REBASE reads it up to the first ':' (request ids may contain ':').
    return f"{charge.cost_micros}:{charge.request_id}"


class RedisCounterStore:
    """``CounterStore`` over Redis (or fakeredis) with Lua scripts; see the module docstring."""

    def __init__(
        self,
        client: Redis,
        *,
        clock: Clock,
        prefix: str = "sp",
        counter_grace_s: float = COUNTER_GRACE_S,
        pending_ttl_s: float = PENDING_TTL_S,
    ) -> None:
        self._client = client
        self._clock = clock
        self._prefix = prefix
        self._counter_grace = timedelta(seconds=counter_grace_s)
        self._pending_ttl_ms = _ttl_ms(pending_ttl_s)
        self._owner = secrets.token_hex(16)  # identifies this store as a lease holder
        self._periods = BoundsCache()
        self._batcher = ScriptBatcher(client)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Clock,
        prefix: str = "sp",
        socket_timeout_s: float = 0.5,
        max_connections: int = 64,
    ) -> RedisCounterStore:
        """A store with its own bounded pool for ``redis://`` / ``rediss://`` / ``unix://`` URLs.

        ``socket_timeout_s`` bounds connecting, each reply, and the wait for a free pooled
        connection. Does no I/O: an unreachable Redis shows on the first call (``StoreError``).
        """
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout_s,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 1, (redis.exceptions.ConnectionError,)),
        )
        return cls(Redis.from_pool(pool), clock=clock, prefix=prefix)

    def _period_keys(self, user_id: int, period: Period) -> list[str]:
        """Counter, reservation amounts and reservation expiries of one user and period."""
        return [
            redis_key(self._prefix, user_id, "c", period.key),
            redis_key(self._prefix, user_id, "r", period.key),
            redis_key(self._prefix, user_id, "rx", period.key),
        ]

    def _counter_ttl_ms(self, period: Period, now_ms: int) -> int:
        """Milliseconds the counter of ``period`` is kept; <= 0 once it is past its grace."""
        return epoch_ms(period.end_at + self._counter_grace) - now_ms

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        """``(spent_micros, reserved_micros)``; reserved counts live reservations only."""
        now_ms = epoch_ms(self._clock.now())
        with map_exceptions():
            keys = self._period_keys(user_id, period)
            spent, reserved = await eval_script(self._client, _READ, keys, [now_ms])
        return int(spent), int(reserved)

    async def read_spent(self, user_id: int, period: Period) -> int:
        """``spent_micros`` alone: one plain GET of the counter (no script)."""
        with map_exceptions():
            raw = await self._client.get(redis_key(self._prefix, user_id, "c", period.key))
        return 0 if raw is None else int(raw)

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        """See ``CounterStore.reserve``: one EVALSHA of ``RESERVE``."""
        args: list[str | int] = [
            epoch_ms(self._clock.now()),
            reservation_id,
            amount_micros,
            "" if limit_micros is None else limit_micros,
            _ttl_ms(ttl_s),
        ]
        with map_exceptions():
            admitted, spent, reserved = await self._batcher.call(
                _RESERVE, self._period_keys(user_id, period), args
            )
        return bool(admitted), int(spent), int(reserved)

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        """Drop a reservation; releasing an unknown or released one does nothing."""
        keys = self._period_keys(user_id, period)[1:]
        with map_exceptions():
            await self._batcher.call(_RELEASE, keys, [reservation_id])

    def _charge_call(self, user_id: int, charges: Sequence[Charge], now_ms: int) -> _KeysArgs:
        """KEYS and ARGV of one ``CHARGE`` for some charges of one user (rule 8)."""
        added: dict[str, int] = {}  # period key -> micros
        periods: dict[str, Period] = {}
        members: list[str | int] = []
        releases: dict[str, list[str]] = {}  # reservation period key -> ids
        for charge in charges:
            for kind in PeriodKind:
                period = self._periods.bounds(kind, charge.charged_at)
                if period.key in added:
                    added[period.key] += charge.cost_micros
                else:
                    added[period.key], periods[period.key] = charge.cost_micros, period
            members += (epoch_ms(charge.charged_at), _pending_member(charge))
            if charge.reservation_id is not None and charge.reservation_period is not None:
                releases.setdefault(charge.reservation_period.key, []).append(charge.reservation_id)
        keys = [redis_key(self._prefix, user_id, "p")]
        args: list[str | int] = [len(added), self._pending_ttl_ms, len(charges)]
        for period_key, micros in added.items():
            keys.append(redis_key(self._prefix, user_id, "c", period_key))
            args += (micros, self._counter_ttl_ms(periods[period_key], now_ms))
        args += members
        for period_key, ids in releases.items():
            keys += (
                redis_key(self._prefix, user_id, "r", period_key),
                redis_key(self._prefix, user_id, "rx", period_key),
            )
            args.append(len(ids))
            args += ids
        return keys, args

    def _charge_calls(self, charges: Sequence[Charge]) -> list[_KeysArgs]:
        now_ms = epoch_ms(self._clock.now())
        by_user: dict[int, list[Charge]] = {}
        for charge in charges:
            by_user.setdefault(charge.user_id, []).append(charge)
        return [
            self._charge_call(user_id, mine[start : start + _CHARGES_PER_CALL], now_ms)
            for user_id, mine in by_user.items()
            for start in range(0, len(mine), _CHARGES_PER_CALL)
        ]

    async def charge(self, charges: Sequence[Charge]) -> None:
        """Count, mark pending and settle each charge: one round trip (rules 7 and 8)."""
        if not charges:
            return
        calls = [(_CHARGE, keys, args) for keys, args in self._charge_calls(charges)]
        with map_exceptions():
            results = await eval_many(self._client, calls)  # NOSCRIPT: only those sent again
        for result in results:
            if isinstance(result, Exception):
                raise store_error(result)

    async def committed(self, charges: Sequence[Charge]) -> None:
        """Remove the charges from their users' pending sets, in one pipeline."""
        members: defaultdict[int, list[str]] = defaultdict(list)
        for charge in charges:
            members[charge.user_id].append(_pending_member(charge))
        if not members:
            return
        with map_exceptions():
            async with self._client.pipeline(transaction=False) as pipe:
                for user_id, names in members.items():
                    pipe.zrem(redis_key(self._prefix, user_id, "p"), *names)
                await pipe.execute()

    async def rebase(
        self, user_id: int, ledger_totals: Mapping[Period, int], pending_max_age_s: float
    ) -> None:
        """Counter := ledger total + pending charges inside the period; one EVALSHA of REBASE."""
        now = self._clock.now()
        now_ms = epoch_ms(now)
        keys = [redis_key(self._prefix, user_id, "p")]
        args: list[str | int] = [epoch_ms(now - timedelta(seconds=pending_max_age_s))]
        for period, total_micros in ledger_totals.items():
            keys.append(redis_key(self._prefix, user_id, "c", period.key))
            args += [
                total_micros,
                epoch_ms(period.start_at),
                epoch_ms(period.end_at),
                self._counter_ttl_ms(period, now_ms),
            ]
        with map_exceptions():
            await eval_script(self._client, _REBASE, keys, args)

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl_s`` seconds (Redis server time).

        True while this store holds it: the holder renews, others get False until it expires.
        """
        keys = [redis_key(self._prefix, None, "lead", name)]
        with map_exceptions():
            held = await eval_script(self._client, _LEAD, keys, [self._owner, _ttl_ms(ttl_s)])
        return bool(held)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` / ``StoreTimeout`` unless Redis answers."""
        with map_exceptions():
            await self._client.ping()

    async def close(self) -> None:
        """Close the client and its pool (calls still being sent fail with ``StoreError``)."""
        await self._batcher.close()
        with map_exceptions():
            await self._client.aclose()
