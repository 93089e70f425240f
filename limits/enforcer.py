"""Admission and settlement of calls over the ports (SPEC §2): the only async domain module.

Flow of one call
1. ``admit``: resolve the user's limit (cached directory), compute the current period, then ask
   the counter store, in one round trip, for ``spent`` (mode ``check``) or for an atomic
   reserve-and-check (mode ``reserve``). The result is a :class:`Admission` whose ``decision`` is
   ``Allowed`` or ``Denied`` (a value, not an exception).
2. The proxy forwards allowed calls. When it knows the usage it calls ``settle``, which hands the
   charge to the sink (counters, then ledger) off the request path and returns at once.
3. When a call ends without a charge (upstream error without usage, refusal), ``release`` drops
   its reservation. Reservations also expire on their own (``reservation_ttl_s``), so a dead
   process cannot hold budget forever.

Store failures: a ``StoreError`` while checking follows ``on_store_error``: ``allow`` admits the
call (fail-open, flagged on the admission so the proxy can log and count it); ``deny`` re-raises
and the proxy answers 503. This is the one place that setting is read.

Reading ``spent`` in mode ``check``
    With a :class:`~limits.spent_cache.SpentCache` (what the app wires), concurrent reads of one
    user and period share one store read, and an answer is reused for ``spent_cache_s`` seconds;
    every charge this process settles is added to it at once (``limits/spent_cache.py``). Without
    one, every admission reads the store. Mode ``reserve`` always asks the store: its
    reserve-and-check is atomic per call, whatever the cache holds.

Overspend bounds
    reserve  At most one call's cost, under any concurrency (each admission reserves an upper
             bound of its cost and requires ``spent + reserved < limit`` atomically).
    check    Not bounded by design: every call admitted while ``spent < limit`` goes through, so
             a user can overshoot by the calls in flight when the limit is reached plus the calls
             admitted before their charges reach the counters (the recorder's charge step:
             at most its ``charge_interval_s``, 20 ms, plus one round trip). The read cache
             adds one term, and only for deployments where one
             user's calls go through several processes: a process may keep admitting that user
             for up to ``spent_cache_s`` (plus one store round trip) after *other* processes'
             charges reached the limit. So the extra overspend is at most, summed over the
             processes, the cost of the user's calls each admits within ``spent_cache_s``
             (roughly ``call rate x spent_cache_s x cost per call``). A process never reads less
             than its own settled spend, so with one process (the embedded mode, or a user whose
             traffic sticks to one replica) the cache adds nothing. ``spent_cache_s = 0``
             removes the term (concurrent reads are still coalesced: a joined read is as fresh as
             one sent when the first of them was).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import secrets
from dataclasses import dataclass

from limits.decisions import Allowed, Decision, Denied, decide
from limits.errors import StoreError, StoreTimeout
from limits.periods import BoundsCache, Period
from limits.ports import Charge, ChargeSink, Clock, CounterStore, Directory, LedgerEntry, Principal
from limits.scopes import LimitConfig, Resolution, resolve
from limits.spent_cache import SpentCache
from limits.status import SpendStatus, spend_status

__all__ = ["Admission", "Enforcer", "Mode", "OnStoreError"]


class Mode(enum.StrEnum):
    CHECK = "check"
    RESERVE = "reserve"


class OnStoreError(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Admission:
    principal: Principal
    decision: Decision
    reservation_id: str | None = None
    store_error: bool = False

    @property
    def period(self) -> Period:
        return self.decision.period


class Enforcer:
    def __init__(
        self,
        *,
        directory: Directory,
        counters: CounterStore,
        sink: ChargeSink,
        clock: Clock,
        mode: Mode = Mode.CHECK,
        on_store_error: OnStoreError = OnStoreError.ALLOW,
        reservation_ttl_s: float = 600.0,
        spent_cache: SpentCache | None = None,
    ) -> None:
        """``spent_cache`` must read the same ``counters`` and be told by the recorder when
        charges have landed (``SpentCache.landed``); without it every check reads the store."""
        self._directory = directory
        self._counters = counters
        self._sink = sink
        self._clock = clock
        self._spent_cache = spent_cache
        self._periods = BoundsCache()
        # Reservation ids: unique per process (random prefix) and per call (counter), without a
        # system call per admission.
        self._reservation_prefix = secrets.token_hex(8)
        self._reservation_ids = itertools.count()
        # Coerced: settings may hand over the plain strings "reserve" / "deny", and the identity
        # tests below would silently treat those as "check" / "allow" (a fail-open).
        self.mode = Mode(mode)
        self._on_store_error = OnStoreError(on_store_error)
        self._reservation_ttl_s = reservation_ttl_s

    async def resolution(self, principal: Principal) -> tuple[LimitConfig, Resolution]:
        """The user's limit config and resolved limit. Raises ``StoreError``."""
        config = await self._directory.limit_config()
        if not config.enabled:
            return config, resolve(config, None, {})
        limits = await self._directory.user_limits(principal.user_id)
        return config, resolve(config, limits.user_limit_micros, limits.group_limits_micros)

    async def status(self, principal: Principal) -> SpendStatus:
        """Current spend status (for ``/v1/usage``). Raises ``StoreError``."""
        config, resolution = await self.resolution(principal)
        period = self._periods.bounds(config.period, self._clock.now())
        spent = await self._counters.read_spent(principal.user_id, period)
        return spend_status(principal.user_name, config, resolution, period, spent)

    async def admit(self, principal: Principal, estimate_micros: int = 0) -> Admission:
        """Decide whether a call may go upstream (see the module docstring).

        ``estimate_micros`` is the call's upper-bound cost, used in mode ``reserve`` only.
        Raises ``StoreError`` only when ``on_store_error`` is ``deny``.
        """
        try:
            config, resolution = await self.resolution(principal)
        except StoreError:
            if self._on_store_error is OnStoreError.DENY:
                raise
            config, resolution = LimitConfig(), resolve(LimitConfig(), None, {})
            period = self._periods.bounds(config.period, self._clock.now())
            return Admission(principal, Allowed(resolution, period, 0), store_error=True)
        period = self._periods.bounds(config.period, self._clock.now())
        try:
            return await self._check(principal, resolution, period, estimate_micros)
        except StoreError:
            if self._on_store_error is OnStoreError.DENY:
                raise
            return Admission(principal, Allowed(resolution, period, 0), store_error=True)

    async def _check(
        self, principal: Principal, resolution: Resolution, period: Period, estimate_micros: int
    ) -> Admission:
        user_id = principal.user_id
        if self.mode is Mode.CHECK or resolution.limit_micros is None:
            if self._spent_cache is not None:
                spent = await self._spent_cache.spent(user_id, period)
            else:
                spent = await self._counters.read_spent(user_id, period)
            return Admission(principal, decide(resolution, period, spent))
        reservation_id = f"{self._reservation_prefix}{next(self._reservation_ids):x}"
        try:
            admitted, spent, reserved = await self._counters.reserve(
                user_id,
                period,
                reservation_id,
                estimate_micros,
                resolution.limit_micros,
                self._reservation_ttl_s,
            )
        except (StoreTimeout, asyncio.CancelledError):
            # The reserve may have run with only its reply lost (a timeout, or the request was
            # cancelled meanwhile): drop it now, or it would hold budget for reservation_ttl_s
            # (releasing an unknown reservation does nothing).
            await self._release(user_id, period, reservation_id)
            raise
        decision = decide(resolution, period, spent, reserved)
        # The store applied the same rule atomically; trust its verdict, either way, if the two
        # disagree: an Allowed without a reservation would escape the overspend bound.
        if admitted and not isinstance(decision, Allowed):
            decision = Allowed(resolution, period, spent, reserved)
        elif not admitted and isinstance(decision, Allowed):
            decision = Denied(resolution, period, resolution.limit_micros, spent, reserved)
        return Admission(principal, decision, reservation_id if admitted else None)

    def settle(self, admission: Admission, entry: LedgerEntry) -> None:
        """Charge a finished call: counters and ledger, off the request path. Never raises."""
        charge = Charge(
            request_id=entry.request_id,
            user_id=entry.user_id,
            cost_micros=entry.cost_micros,
            charged_at=entry.charged_at,
            reservation_id=admission.reservation_id,
            reservation_period=admission.period if admission.reservation_id else None,
        )
        if self._spent_cache is not None:
            self._spent_cache.settled(charge)  # counted at once, before the store has it
        self._sink.submit(entry, charge)

    async def release(self, admission: Admission) -> None:
        """Drop the call's reservation, if any. Store errors are swallowed: it expires anyway."""
        if admission.reservation_id is not None:
            await self._release(
                admission.principal.user_id, admission.period, admission.reservation_id
            )

    async def _release(self, user_id: int, period: Period, reservation_id: str) -> None:
        try:
            await self._counters.release(user_id, period, reservation_id)
        except StoreError:
            return
