"""``RedisCounterStore``: the shared ``CounterStore`` for many processes and machines (SPEC §8).

Key layout and scripts: ``limits/store/redis_scripts.py``.

Rules
1. One round trip per call. Each operation is one EVALSHA; a batch of charges is one
   non-transactional pipeline of EVALSHA, atomic per charge (not per batch), as the port asks.
2. Scripts are cached server-side. redis-py's ``register_script`` sends EVALSHA and reloads the
   script on NOSCRIPT (single calls), and a pipeline loads missing scripts before it runs, so a
   FLUSHALL, SCRIPT FLUSH or a restarted, empty Redis needs nothing from this module.
3. No ``redis`` exception leaves this module: :func:`map_exceptions` turns timeouts into
   ``StoreTimeout`` and every other ``RedisError`` or ``OSError`` into ``StoreUnavailable``.
4. A dead Redis must not hang a request: short connect/read timeouts, a bounded pool that waits
   at most as long for a free connection, and one immediate retry on ``ConnectionError`` only
   (a stale pooled connection after a restart). A timeout is never retried: the script may have
   run, and a retried CHARGE would count twice.
5. Time comes from the injected ``Clock`` and is passed to Lua as ARGV (see redis_scripts rule 2).
6. The store owns its client: :meth:`RedisCounterStore.close` closes it, also an injected one.
"""

from __future__ import annotations

import math
import secrets
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from limits.errors import StoreTimeout, StoreUnavailable
from limits.periods import Period, PeriodKind, bounds
from limits.ports import Charge, Clock
from limits.store.redis_scripts import CHARGE, LEAD, READ, REBASE, RELEASE, RESERVE, redis_key

__all__ = ["COUNTER_GRACE_S", "PENDING_TTL_S", "RedisCounterStore", "map_exceptions"]

COUNTER_GRACE_S = 86_400.0
"""A counter outlives its period by this much (late charges, status of the previous period)."""

PENDING_TTL_S = 2 * 86_400.0
"""A user's pending set expires this long after their last charge (garbage collection only)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@contextmanager
def map_exceptions() -> Iterator[None]:
    """Re-raise driver errors as ``StoreTimeout`` / ``StoreUnavailable`` (httpcore style)."""
    try:
        yield
    except (redis.exceptions.TimeoutError, TimeoutError) as exc:
        raise StoreTimeout(f"redis did not answer in time: {exc}") from exc
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis is unavailable: {exc}") from exc


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
        self._charge = client.register_script(CHARGE)
        self._reserve = client.register_script(RESERVE)
        self._read = client.register_script(READ)
        self._release = client.register_script(RELEASE)
        self._rebase = client.register_script(REBASE)
        self._lead = client.register_script(LEAD)

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
            spent, reserved = await self._read(self._period_keys(user_id, period), [now_ms])
        return int(spent), int(reserved)

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
            admitted, spent, reserved = await self._reserve(
                self._period_keys(user_id, period), args
            )
        return bool(admitted), int(spent), int(reserved)

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        """Drop a reservation; releasing an unknown or released one does nothing."""
        keys = self._period_keys(user_id, period)[1:]
        with map_exceptions():
            await self._release(keys, [reservation_id])

    def _charge_call(self, charge: Charge, now_ms: int) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of ``CHARGE`` for one charge."""
        periods = [bounds(kind, charge.charged_at) for kind in PeriodKind]
        keys = [redis_key(self._prefix, charge.user_id, "c", period.key) for period in periods]
        keys.append(redis_key(self._prefix, charge.user_id, "p"))
        args: list[str | int] = [
            charge.cost_micros,
            _pending_member(charge),
            epoch_ms(charge.charged_at),
        ]
        args += [self._counter_ttl_ms(period, now_ms) for period in periods]
        args.append(self._pending_ttl_ms)
        if charge.reservation_id is not None and charge.reservation_period is not None:
            keys += self._period_keys(charge.user_id, charge.reservation_period)[1:]
            args.append(charge.reservation_id)
        return keys, args

    async def charge(self, charges: Sequence[Charge]) -> None:
        """Count, mark pending and settle each charge; the batch is one pipeline."""
        if not charges:
            return
        now_ms = epoch_ms(self._clock.now())
        with map_exceptions():
            async with self._client.pipeline(transaction=False) as pipe:
                for charge in charges:
                    keys, args = self._charge_call(charge, now_ms)
                    await self._charge(keys, args, client=pipe)
                await pipe.execute()

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
        args: list[int] = [epoch_ms(now - timedelta(seconds=pending_max_age_s))]
        for period, total_micros in ledger_totals.items():
            keys.append(redis_key(self._prefix, user_id, "c", period.key))
            args += [
                total_micros,
                epoch_ms(period.start_at),
                epoch_ms(period.end_at),
                self._counter_ttl_ms(period, now_ms),
            ]
        with map_exceptions():
            await self._rebase(keys, args)

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl_s`` seconds (Redis server time).

        True while this store holds it: the holder renews, others get False until it expires.
        """
        keys = [redis_key(self._prefix, None, "lead", name)]
        with map_exceptions():
            held = await self._lead(keys, [self._owner, _ttl_ms(ttl_s)])
        return bool(held)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` / ``StoreTimeout`` unless Redis answers."""
        with map_exceptions():
            await self._client.ping()

    async def close(self) -> None:
        """Close the client and its pool."""
        with map_exceptions():
            await self._client.aclose()
