"""``CachedDirectory``: a per-process cache over a ``Directory`` (keys, limit config, overrides).

Every request needs its key's owner and the user's limits; asking the database each time would
put it on the hot path. Admin writes bump ``Directory.revision()`` (design.md, "Caches and
invalidation"); this cache watches that number.

Rules
1. ``principal_for_key``, ``limit_config`` and ``user_limits`` are cached, including negative
   answers (an unknown key maps to ``None``), so a client retrying a bad key does not reach the
   database on every request. Each cache holds at most ``max_entries`` entries (oldest dropped
   first), so random keys cannot exhaust memory.
2. ``inner.revision()`` is read by the background poller (``start``/``stop``) every
   ``poll_interval_s``, so an idle process also notices; without a poller, or when it has
   fallen behind by half an interval (a stalled event loop), on access, at most once per
   ``poll_interval_s`` of the injected clock. A running poller thus keeps the poll off the
   request path and the database at one poll per interval. When the revision differs from the
   last one seen, every cache is dropped. Bound: a revoked key or changed limit takes effect
   within ``poll_interval_s`` + one query, ``1.5 x poll_interval_s`` + one query at worst.
3. Concurrent misses for the same entry share one inner lookup (single flight). The lookup runs
   in its own task, so one caller's cancellation (a client hanging up) does not fail the others.
   A lookup that started before caches were dropped is not stored and not shared afterwards, so
   an answer from before a revocation never outlives the poll that saw the revocation.
4. ``StoreError`` from an inner lookup propagates: an unverifiable key is never accepted (the
   proxy answers 503). A failed revision poll is logged and counted, and entries verified before
   keep being served, so a database outage does not stop traffic (SPEC §8 inv. 3); once no poll
   has succeeded for ``max_stale_s``, every cache is dropped and lookups must reach the database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from limits.errors import StoreError
from limits.ports import Clock, Directory, Principal, UserLimits
from limits.scopes import LimitConfig
from limits.supervisor import Supervisor

__all__ = ["CachedDirectory"]

logger = logging.getLogger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")


class _Cache(Generic[_K, _V]):
    """One bounded map with single-flight misses (rules 1 and 3)."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: dict[_K, _V] = {}
        self._in_flight: dict[_K, asyncio.Task[_V]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._entries.clear()
        self._in_flight.clear()  # running lookups finish for their callers, unshared (rule 3)
        self._generation += 1

    def peek(self, key: _K) -> tuple[bool, _V | None]:
        """``(True, value)`` on a hit, else ``(False, None)``: the per-request path, no await."""
        if key in self._entries:
            self.hits += 1
            return True, self._entries[key]
        return False, None

    async def get(self, key: _K, fetch: Callable[[], Coroutine[Any, Any, _V]]) -> _V:
        if key in self._entries:
            self.hits += 1
            return self._entries[key]
        task = self._in_flight.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.ensure_future(fetch())
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._landed, key, self._generation))
        return await asyncio.shield(task)

    def _landed(self, key: _K, generation: int, task: asyncio.Task[_V]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if task.cancelled() or task.exception() is not None or generation != self._generation:
            return
        if len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = task.result()

    async def close(self) -> None:
        tasks = list(self._in_flight.values())
        self._in_flight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class CachedDirectory:
    """A ``Directory`` that caches ``inner`` (see the module docstring for the rules).

    Metrics (plain attributes): ``polls``, ``poll_failures``, ``invalidations``, and
    ``hits``/``misses`` as properties.
    """

    def __init__(
        self,
        inner: Directory,
        *,
        clock: Clock,
        poll_interval_s: float = 1.0,
        max_stale_s: float = 300.0,
        max_entries: int = 100_000,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._poll_interval = timedelta(seconds=poll_interval_s)
        self._poller_grace = self._poll_interval / 2  # rule 2: the poller's slack
        self._max_stale = timedelta(seconds=max_stale_s)
        self._keys: _Cache[str, Principal | None] = _Cache(max_entries)
        self._configs: _Cache[None, LimitConfig] = _Cache(1)
        self._limits: _Cache[int, UserLimits] = _Cache(max_entries)
        self._revision: int | None = None
        self._polled_at: datetime | None = None  # when the last poll started
        self._confirmed_at: datetime | None = None  # when the last successful poll started
        self._poller = Supervisor("directory-poller", self._poll_loop)
        self.polls = 0
        self.poll_failures = 0
        self.invalidations = 0

    @property
    def hits(self) -> int:
        return self._keys.hits + self._configs.hits + self._limits.hits

    @property
    def misses(self) -> int:
        return self._keys.misses + self._configs.misses + self._limits.misses

    async def principal_for_key(self, key_hash: str) -> Principal | None:
        """The owner of an active key with this SHA-256 hex digest, else None.

        Raises ``StoreError`` when the answer is not cached and the inner directory fails.
        """
        if self._poll_due():
            await self._poll_quietly(self._clock.now())
        hit, principal = self._keys.peek(key_hash)
        if hit:
            return principal
        return await self._keys.get(key_hash, lambda: self._inner.principal_for_key(key_hash))

    async def limit_config(self) -> LimitConfig:
        """The limit configuration. Raises ``StoreError`` (uncached and inner failed)."""
        if self._poll_due():
            await self._poll_quietly(self._clock.now())
        hit, config = self._configs.peek(None)
        if hit and config is not None:
            return config
        return await self._configs.get(None, self._inner.limit_config)

    async def user_limits(self, user_id: int) -> UserLimits:
        """The user's overrides. Raises ``StoreError`` (uncached and inner failed)."""
        if self._poll_due():
            await self._poll_quietly(self._clock.now())
        hit, limits = self._limits.peek(user_id)
        if hit and limits is not None:
            return limits
        return await self._limits.get(user_id, lambda: self._inner.user_limits(user_id))

    async def revision(self) -> int:
        """Poll the inner revision now (dropping caches if it changed). Raises ``StoreError``."""
        return await self._poll(self._clock.now())

    def invalidate(self) -> None:
        """Drop every cached entry now (e.g. after an admin write in this process)."""
        for cache in (self._keys, self._configs, self._limits):
            cache.clear()

    def start(self) -> None:
        """Poll every ``poll_interval_s`` in the background, so idle processes notice changes."""
        self._poller.start()

    async def stop(self) -> None:
        """Stop the poller and cancel lookups still in flight."""
        await self._poller.stop()
        for cache in (self._keys, self._configs, self._limits):
            await cache.close()

    def _poll_due(self) -> bool:
        """Whether this access must poll (rule 2); the common answer, no, needs no await."""
        last = self._polled_at
        if last is None:
            return True
        now = self._clock.now()
        due_at = last + self._poll_interval
        if self._poller.running:
            due_at += self._poller_grace  # the poller's turn, unless it is late (rule 2)
        return not last <= now < due_at  # a clock that went backwards counts as due

    async def _poll_quietly(self, now: datetime) -> None:
        try:
            await self._poll(now)
        except StoreError as exc:
            self.poll_failures += 1
            logger.warning("directory revision poll failed: %r; serving cached entries", exc)
            if self._confirmed_at is None or now - self._confirmed_at > self._max_stale:
                self.invalidate()

    async def _poll(self, now: datetime) -> int:
        # Marked before awaiting: concurrent callers do not poll again meanwhile (rule 2).
        self._polled_at = now
        self.polls += 1
        revision = await self._inner.revision()
        self._confirmed_at = now
        if revision != self._revision:
            if self._revision is not None:
                self.invalidations += 1
            self.invalidate()
            self._revision = revision
        return revision

    async def _poll_loop(self) -> None:
        interval_s = self._poll_interval.total_seconds()
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            # Keep the cadence: a poll is due one interval after the last one STARTED. The first
            # waits too: the first request polls before its lookups (rule 3 needs that order).
            await asyncio.sleep(max(0.0, interval_s - (loop.time() - started)))
            started = loop.time()
            await self._poll_quietly(self._clock.now())
