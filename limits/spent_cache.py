"""``SpentCache``: mode ``check`` reads of a user's spend, coalesced and briefly cached per process.

Mode ``check`` admits a call iff ``spent < limit`` (SPEC §2). Asking the shared counter store for
``spent`` on every call costs one round trip per call, most of them for the same few users; this
module answers most of them from memory, within a bounded staleness.

Rules
1. Single flight: concurrent reads of one (user, period) share one store read. A caller that joins
   a read in flight gets the value that read returns, i.e. what a read of its own sent up to one
   round trip earlier would have seen: joining never makes an answer staler than that.
2. Cache: a finished read answers further calls for ``max_age_s`` seconds after it *started*
   (the store's value is at least that recent). ``max_age_s = 0`` keeps rule 1 only.
3. Own charges count at once: the enforcer reports every charge this process settles
   (:meth:`settled`) and the recorder reports when the charge step has passed it to the counter
   store (:meth:`landed`). An answer is

       store value + own charges settled after its read started
                   + own charges settled before it started that had not landed by then

   so this process never reads less than its own settled spend, cache or no cache (it reads
   *more* while a charge that landed during the read is counted in both terms: at most
   ``max_age_s``, and in the safe direction). A charge counts only for the periods containing
   its ``charged_at``, except in the last term (per user, whatever the period: conservative).
   A charge whose counter update failed counts as landed: the refresher restores it from the
   ledger (``limits/refresher.py``), as without this cache.
4. What staleness remains is other processes' charges: they show up at most ``max_age_s`` (plus
   one round trip) after they reach the store. The overspend this allows is written in
   ``limits/enforcer.py``.
5. Errors are never cached: a ``StoreError`` goes to the caller and to the callers that joined
   that read; the next call asks the store again. A leading caller that is cancelled (a client
   hanging up) abandons its read, and whoever joined it reads again on their own.
6. Memory: expired answers are dropped at most once a second (``_SWEEP_INTERVAL_S``), on a store
   read; the not-yet-landed sums hold only users with charges on their way to the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from limits.errors import StoreError
from limits.periods import Period
from limits.ports import Charge, CounterStore

__all__ = ["SpentCache"]

_SWEEP_INTERVAL_S = 1.0


@dataclass(slots=True, eq=False)
class _Reading:
    """One store read of one user's spend in ``period``, and what this process added since."""

    period: Period
    own_micros: int  # own charges the store value may lack (rule 3)
    started_at: float  # timer seconds
    spent_micros: int = 0
    done: bool = False
    error: StoreError | None = None
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def answer(self) -> int:
        return self.spent_micros + self.own_micros


class SpentCache:
    """Coalesced, briefly cached ``read_spent`` over a ``CounterStore`` (see the module rules).

    Metrics (plain attributes): ``reads`` (store reads), ``hits`` (answers from a finished read),
    ``joins`` (answers from a read in flight).
    """

    def __init__(
        self,
        counters: CounterStore,
        *,
        max_age_s: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_s < 0:
            raise ValueError("max_age_s must be >= 0")
        self._counters = counters
        self._max_age_s = max_age_s
        self._timer = timer
        self._readings: dict[int, dict[str, _Reading]] = {}  # user -> period key -> latest
        self._unlanded: dict[int, int] = {}  # user -> own charges settled, not yet landed
        self._next_sweep_at = 0.0
        self.reads = self.hits = self.joins = 0

    @property
    def max_age_s(self) -> float:
        return self._max_age_s

    async def spent(self, user_id: int, period: Period) -> int:
        """Spent micros of ``user_id`` in ``period`` (rules 1-3). Raises ``StoreError``."""
        while True:
            readings = self._readings.get(user_id)
            reading = None if readings is None else readings.get(period.key)
            if reading is None:
                return await self._read(user_id, period)
            if reading.done:
                if self._timer() - reading.started_at < self._max_age_s:
                    self.hits += 1
                    return reading.answer
                return await self._read(user_id, period)
            waiter = asyncio.get_running_loop().create_future()
            reading.waiters.append(waiter)
            await waiter  # cancelling this caller cancels its own future only
            answer = self._joined(reading)
            if answer is not None:
                return answer
            # The leader was cancelled and abandoned the read (rule 5): read again.

    def _joined(self, reading: _Reading) -> int | None:
        """The answer of a read this caller joined; None if its leader abandoned it."""
        if reading.error is not None:
            raise reading.error
        if not reading.done:
            return None
        self.joins += 1
        return reading.answer

    def settled(self, charge: Charge) -> None:
        """This process settled ``charge`` (rule 3): count it at once. Never raises."""
        cost_micros = charge.cost_micros
        if cost_micros <= 0:
            return
        user_id = charge.user_id
        self._unlanded[user_id] = self._unlanded.get(user_id, 0) + cost_micros
        readings = self._readings.get(user_id)
        if readings:
            at = charge.charged_at
            for reading in readings.values():
                if reading.period.start_at <= at < reading.period.end_at:
                    reading.own_micros += cost_micros

    def landed(self, charges: Sequence[Charge]) -> None:
        """The recorder's charge step is done with ``charges`` (rule 3). Never raises."""
        unlanded = self._unlanded
        for charge in charges:
            if charge.cost_micros <= 0:
                continue
            left = unlanded.get(charge.user_id, 0) - charge.cost_micros
            if left > 0:
                unlanded[charge.user_id] = left
            else:
                unlanded.pop(charge.user_id, None)

    async def _read(self, user_id: int, period: Period) -> int:
        """Lead a store read that others may join (rule 1)."""
        now = self._timer()
        self._sweep(now)
        reading = _Reading(period, self._unlanded.get(user_id, 0), now)
        self._readings.setdefault(user_id, {})[period.key] = reading
        self.reads += 1
        try:
            reading.spent_micros = await self._counters.read_spent(user_id, period)
        except BaseException as exc:
            if isinstance(exc, StoreError):
                reading.error = exc
            self._forget(user_id, reading)
            self._wake(reading)
            raise
        reading.done = True
        if self._max_age_s <= 0:
            self._forget(user_id, reading)
        self._wake(reading)
        return reading.answer

    def _forget(self, user_id: int, reading: _Reading) -> None:
        readings = self._readings.get(user_id)
        if readings is not None and readings.get(reading.period.key) is reading:
            del readings[reading.period.key]
            if not readings:
                del self._readings[user_id]

    @staticmethod
    def _wake(reading: _Reading) -> None:
        for waiter in reading.waiters:
            if not waiter.done():
                waiter.set_result(None)
        reading.waiters.clear()

    def _sweep(self, now: float) -> None:
        """Drop expired answers, at most once per ``_SWEEP_INTERVAL_S`` (rule 6)."""
        if now < self._next_sweep_at:
            return
        self._next_sweep_at = now + _SWEEP_INTERVAL_S
        for user_id, readings in list(self._readings.items()):
            for key, reading in list(readings.items()):
                if reading.done and now - reading.started_at >= self._max_age_s:
                    del readings[key]
            if not readings:
                del self._readings[user_id]
