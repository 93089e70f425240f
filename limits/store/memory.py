"""``MemoryCounterStore``: in-process counters, the embedded default and the tests' fake.

It follows the same contract as ``RedisCounterStore`` (one contract suite runs over both).

Rules
1. No method awaits anything: every method body runs to completion in one step of the event loop,
   so each is atomic without a lock (the state-machine test drives them without a loop).
2. Time comes from the injected ``Clock``. A reservation is live while ``now < expires_at``; a
   counter lives until its period's end plus ``counter_grace_s``; a user's pending charges until
   ``pending_ttl_s`` after their last charge. These mirror the Redis key TTLs, so both stores
   answer alike.
3. A charge whose period is already past its grace leaves that counter alone (Redis: TTL <= 0).
4. Expired entries are dropped when read and, at most once a minute, in one sweep, so memory
   stays bounded by the live users and periods.
5. Pending charges are identified by ``(request_id, cost_micros)``, as the Redis member is.
6. One process is the only candidate for a lease: :meth:`try_lead` is always True.
7. Periods come from a :class:`BoundsCache`: a charge needs its day, week and month, and those
   change once a day at most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from limits.periods import BoundsCache, Period, PeriodKind
from limits.ports import Charge, Clock

__all__ = ["MemoryCounterStore"]

_SWEEP_INTERVAL = timedelta(minutes=1)


@dataclass(slots=True)
class _Counter:
    spent_micros: int
    expires_at: datetime


@dataclass(slots=True)
class _Pending:
    """One user's charges not yet in the ledger: (request_id, cost) -> charged_at."""

    expires_at: datetime
    charges: dict[tuple[str, int], datetime] = field(default_factory=dict)


@dataclass(slots=True)
class _Reservation:
    amount_micros: int
    expires_at: datetime


class MemoryCounterStore:
    """``CounterStore`` in plain dicts; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        *,
        counter_grace_s: float = 86_400.0,
        pending_ttl_s: float = 2 * 86_400.0,
    ) -> None:
        self._clock = clock
        self._counter_grace = timedelta(seconds=counter_grace_s)
        self._pending_ttl = timedelta(seconds=pending_ttl_s)
        self._counters: dict[tuple[int, str], _Counter] = {}
        self._pending: dict[int, _Pending] = {}
        self._reservations: dict[tuple[int, str], dict[str, _Reservation]] = {}
        self._next_sweep_at: datetime | None = None
        self._periods = BoundsCache()

    def _spent(self, user_id: int, period: Period, now: datetime) -> int:
        counter = self._counters.get((user_id, period.key))
        if counter is None or counter.expires_at <= now:
            return 0
        return counter.spent_micros

    def _live(self, user_id: int, period: Period, now: datetime) -> dict[str, _Reservation]:
        """The live reservations of one user and period, expired ones pruned."""
        held = self._reservations.get((user_id, period.key), {})
        live = {rid: res for rid, res in held.items() if now < res.expires_at}
        if live:
            self._reservations[(user_id, period.key)] = live
        else:
            self._reservations.pop((user_id, period.key), None)
        return live

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        """``(spent_micros, reserved_micros)``; reserved counts live reservations only."""
        now = self._clock.now()
        held = self._reservations.get((user_id, period.key), {})
        reserved = sum(res.amount_micros for res in held.values() if now < res.expires_at)
        return self._spent(user_id, period, now), reserved

    async def read_spent(self, user_id: int, period: Period) -> int:
        """``spent_micros`` alone."""
        return self._spent(user_id, period, self._clock.now())

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        """See ``CounterStore.reserve``."""
        now = self._clock.now()
        self._sweep(now)
        live = self._live(user_id, period, now)
        spent = self._spent(user_id, period, now)
        reserved = sum(res.amount_micros for res in live.values())
        admitted = limit_micros is None or spent + reserved < limit_micros
        if admitted:
            expires_at = now + timedelta(seconds=ttl_s)
            live[reservation_id] = _Reservation(amount_micros, expires_at)
            self._reservations[(user_id, period.key)] = live
        return admitted, spent, reserved

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        """Drop a reservation; releasing an unknown or released one does nothing."""
        self._drop_reservation(user_id, period, reservation_id)

    def _drop_reservation(self, user_id: int, period: Period, reservation_id: str) -> None:
        held = self._reservations.get((user_id, period.key))
        if held is None:
            return
        held.pop(reservation_id, None)
        if not held:
            del self._reservations[(user_id, period.key)]

    async def charge(self, charges: Sequence[Charge]) -> None:
        """Count each charge in its day/week/month, mark it pending, settle its reservation."""
        now = self._clock.now()
        self._sweep(now)
        for charge in charges:
            self._charge_one(charge, now)

    def _charge_one(self, charge: Charge, now: datetime) -> None:
        for kind in PeriodKind:
            period = self._periods.bounds(kind, charge.charged_at)
            expires_at = period.end_at + self._counter_grace
            if expires_at <= now:
                continue  # the period is long over (rule 3)
            key = (charge.user_id, period.key)
            counter = self._counters.get(key)
            if counter is not None and now < counter.expires_at:
                counter.spent_micros += charge.cost_micros
                counter.expires_at = expires_at
            else:
                self._counters[key] = _Counter(charge.cost_micros, expires_at)
        pending = self._pending_of(charge.user_id, now)
        pending.charges[(charge.request_id, charge.cost_micros)] = charge.charged_at
        pending.expires_at = now + self._pending_ttl
        if charge.reservation_id is not None and charge.reservation_period is not None:
            self._drop_reservation(charge.user_id, charge.reservation_period, charge.reservation_id)

    def _pending_of(self, user_id: int, now: datetime) -> _Pending:
        pending = self._pending.get(user_id)
        if pending is None or pending.expires_at <= now:
            pending = self._pending[user_id] = _Pending(now + self._pending_ttl)
        return pending

    async def committed(self, charges: Sequence[Charge]) -> None:
        """The ledger holds these charges: drop them from pending."""
        for charge in charges:
            pending = self._pending.get(charge.user_id)
            if pending is not None:
                pending.charges.pop((charge.request_id, charge.cost_micros), None)

    async def rebase(
        self, user_id: int, ledger_totals: Mapping[Period, int], pending_max_age_s: float
    ) -> None:
        """Counter := ledger total + pending charges inside the period (see the port)."""
        now = self._clock.now()
        cutoff = now - timedelta(seconds=pending_max_age_s)
        pending = self._pending.get(user_id)
        kept: dict[tuple[str, int], datetime] = {}
        if pending is not None and now < pending.expires_at:
            kept = {key: at for key, at in pending.charges.items() if at >= cutoff}
            pending.charges = kept
        for period, total_micros in ledger_totals.items():
            expires_at = period.end_at + self._counter_grace
            if expires_at <= now:
                self._counters.pop((user_id, period.key), None)
                continue
            in_period = sum(cost for (_, cost), at in kept.items() if period.contains(at))
            self._counters[(user_id, period.key)] = _Counter(total_micros + in_period, expires_at)

    def _sweep(self, now: datetime) -> None:
        """Drop every expired entry, at most once per ``_SWEEP_INTERVAL`` (rule 4)."""
        if self._next_sweep_at is not None and now < self._next_sweep_at:
            return
        self._next_sweep_at = now + _SWEEP_INTERVAL
        self._counters = {k: c for k, c in self._counters.items() if now < c.expires_at}
        self._pending = {u: p for u, p in self._pending.items() if now < p.expires_at}
        for key, held in list(self._reservations.items()):
            live = {rid: res for rid, res in held.items() if now < res.expires_at}
            if live:
                self._reservations[key] = live
            else:
                del self._reservations[key]

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        """Always True: this process is the only one sharing these counters (rule 6)."""
        return True

    async def ping(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Nothing to release."""
