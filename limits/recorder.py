"""``LedgerRecorder``: the ``ChargeSink`` that moves settled calls into counters and the ledger.

``submit`` appends to an in-memory queue and returns: it never blocks and never raises. Two
supervised tasks then take every row through three steps, in this order:

1. **charge** (the charger): ``counters.charge(batch)`` adds the cost to the user's day/week/month
   counters and marks it *pending*. A pass takes every row waiting (up to ``batch_size``) and
   passes start at most once per ``charge_interval_s``: a quiet process charges a row at once, a
   busy one sends one batch (one round trip) per interval. A ``StoreError`` is counted
   (``counter_failures``) and the row moves on anyway: the refresher rebuilds counters from the
   ledger (``limits/refresher.py``). Either way ``on_charged(batch)`` is told after the pass.
2. **insert** (the writer): ``ledger.insert(batch)``, idempotent on ``request_id``. Write passes
   run at most every ``flush_interval_s``, earlier when ``batch_size`` rows wait or a drain asks.
3. **committed**: ``counters.committed(batch)`` after the insert succeeded: no longer pending.

Rules
R1 No loss: a row leaves memory only after ``ledger.insert`` or ``Spool.append`` (fsync'd)
   returned for it.
R2 No duplicates: each row is charged once; a retry or replay that offers a row to the ledger
   again is a no-op there (unique ``request_id``, SPEC §8 inv. 2).
R3 Outage: on ``StoreError`` rows stay queued and the writer retries after a capped exponential
   backoff (``retry_initial_s`` doubling up to ``retry_max_s``). Whenever more than ``queue_max``
   rows wait, the oldest go to the spool, so memory stays bounded (SPEC §8 inv. 3). Every write
   pass replays the spool before newer rows, and clears it once all its rows are in.
R4 Restart: ``start`` replays a spool left by a previous run, without charging its rows again
   (that run did, or its counters are gone and the refresher counts the rows from the ledger).
R5 Drain: ``drain()`` waits until every row submitted before the call is charged and then
   inserted or spooled: it forces a write pass that ignores the interval and the backoff and
   spools what the database refuses. ``stop(drain_timeout_s)`` drains within the bound, cancels
   the tasks, then spools whatever is still in memory (SPEC §8 inv. 4).
R6 Spool I/O is cancel-safe and off the event loop (``limits/async_spool.py``).

Bound: a SIGKILL loses the rows in memory: about one flush interval of this process's charges
(SPEC §8 inv. 5), up to ``queue_max`` rows during a database outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from limits.async_spool import AsyncSpool
from limits.backoff import Backoff
from limits.errors import StoreError
from limits.ports import Charge, Clock, CounterStore, LedgerEntry, LedgerStore, Spool
from limits.supervisor import Supervisor

__all__ = ["LedgerRecorder"]

logger = logging.getLogger(__name__)

_Row = tuple[LedgerEntry, Charge]


class LedgerRecorder:
    """Counters first, then batched, retried and spooled ledger writes (see module docstring).

    Metrics (plain attributes): ``queue_depth``, ``spooled_rows``, ``rows_written`` (rows the
    ledger actually inserted), ``insert_failures``, ``counter_failures``, ``last_write_at``.
    """

    def __init__(
        self,
        *,
        counters: CounterStore,
        ledger: LedgerStore,
        spool: Spool,
        flush_interval_s: float,
        batch_size: int,
        queue_max: int,
        clock: Clock,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        restart_delay_s: float = 1.0,
        charge_interval_s: float = 0.02,
        on_charged: Callable[[Sequence[Charge]], None] | None = None,
    ) -> None:
        if flush_interval_s <= 0 or batch_size < 1 or queue_max < 1:
            raise ValueError("flush_interval_s, batch_size and queue_max must be positive")
        self._counters, self._ledger, self._clock = counters, ledger, clock
        self._on_charged = on_charged
        self._spool = AsyncSpool(spool)
        self._flush_interval_s = flush_interval_s
        self._batch_size, self._queue_max = batch_size, queue_max
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._incoming: deque[_Row] = deque()  # submitted, not yet charged
        self._pending: deque[_Row] = deque()  # charged, not yet inserted or spooled
        # Monotonic row counts (FIFO, so a count names a prefix of all rows): for drain().
        self._submitted = self._charged = self._settled = 0
        self._flush_requested = self._flush_served = 0
        self._next_pass_at = self._next_charge_at = 0.0  # event-loop times
        self._charge_interval_s = charge_interval_s
        self._incoming_ready, self._writer_wake = asyncio.Event(), asyncio.Event()
        self._progress = asyncio.Event()  # replaced on every notify; see _wait_until
        self._charger = Supervisor("ledger-charger", self._charge_loop, restart_delay_s)
        self._writer = Supervisor("ledger-writer", self._write_loop, restart_delay_s)
        self._stopped = False
        self.rows_written = self.insert_failures = self.counter_failures = 0
        self.last_write_at: datetime | None = None

    @property
    def queue_depth(self) -> int:
        """Rows in memory: submitted and not yet inserted nor spooled."""
        return len(self._incoming) + len(self._pending)

    @property
    def spooled_rows(self) -> int:
        return len(self._spool)

    def submit(self, entry: LedgerEntry, charge: Charge) -> None:
        """Queue one charged call. Never blocks, never raises (``ChargeSink``)."""
        if self._stopped:  # a straggler after shutdown: straight to the spool (blocking, rare)
            try:
                self._spool.append_blocking([entry])
            except OSError as exc:
                logger.error("LOST a ledger row submitted after shutdown: %r", exc)
            return
        self._incoming.append((entry, charge))
        self._submitted += 1
        self._incoming_ready.set()

    def start(self) -> None:
        """Start the charger and the writer; the writer first replays a leftover spool (R4)."""
        if self._stopped:
            raise RuntimeError("a stopped LedgerRecorder cannot be started again")
        now = asyncio.get_running_loop().time()  # a leftover spool makes the first pass due now
        self._next_pass_at = now if len(self._spool) else now + self._flush_interval_s
        self._charger.start()
        self._writer.start()

    async def drain(self) -> None:
        """Wait until every row submitted so far is charged, then inserted or spooled, after
        one forced write pass (which also replays the spool if the database takes it) (R5).

        Raises ``RuntimeError`` if rows are outstanding and the recorder is not running.
        """
        target = self._submitted
        if not self._writer.running:
            if self._settled < target:
                raise RuntimeError("LedgerRecorder.drain() needs a started recorder")
            return
        await self._wait_until(lambda: self._charged >= target)
        self._flush_requested += 1
        ticket = self._flush_requested
        self._writer_wake.set()
        await self._wait_until(lambda: self._flush_served >= ticket and self._settled >= target)

    async def stop(self, drain_timeout_s: float) -> None:
        """Drain for at most ``drain_timeout_s``, stop the tasks, spool what is left (R5)."""
        if self._writer.running:
            try:
                async with asyncio.timeout(drain_timeout_s):
                    await self.drain()
            except TimeoutError:
                logger.warning("ledger drain timed out after %.1f s", drain_timeout_s)
            await self._charger.stop()
            await self._writer.stop()
            await self._spool.settle()
        self._stopped = True
        self._spool_rest()

    async def _charge_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._incoming:
                self._incoming_ready.clear()
                await self._incoming_ready.wait()
                continue
            wait_s = self._next_charge_at - loop.time()
            if wait_s > 0 and len(self._incoming) < self._batch_size:
                await asyncio.sleep(wait_s)  # let the batch gather (step 1)
                continue
            self._next_charge_at = loop.time() + self._charge_interval_s
            await self._charge(list(itertools.islice(self._incoming, self._batch_size)))

    async def _charge(self, rows: list[_Row]) -> None:
        # Rows stay in _incoming while charging, so a cancelled charge leaves them for stop().
        charges = [charge for _, charge in rows]
        try:
            await self._counters.charge(charges)
        except StoreError as exc:
            self.counter_failures += 1
            logger.warning("charging %d rows to counters failed: %r", len(rows), exc)
        if self._on_charged is not None:
            self._on_charged(charges)
        for _ in rows:
            self._pending.append(self._incoming.popleft())
        self._charged += len(rows)
        self._writer_wake.set()
        self._notify()

    async def _write_loop(self) -> None:
        while True:
            delay = self._pass_delay()
            if delay is None or delay > 0:
                self._writer_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._writer_wake.wait()
                continue
            await self._write_pass()

    def _pass_delay(self) -> float | None:
        """Seconds until the next write pass is due; None while there is nothing to write."""
        if self._flush_requested > self._flush_served or len(self._pending) > self._queue_max:
            return 0.0
        if not self._pending and not len(self._spool):
            return None
        due_at = self._backoff.retry_at
        if len(self._pending) < self._batch_size:
            due_at = max(due_at, self._next_pass_at)
        return max(0.0, due_at - asyncio.get_running_loop().time())

    async def _write_pass(self) -> None:
        loop = asyncio.get_running_loop()
        ticket = self._flush_requested
        forced = ticket > self._flush_served
        if len(self._pending) > self._queue_max:
            await self._spill(len(self._pending) - self._queue_max)  # R3
        has_work = bool(self._pending) or len(self._spool) > 0
        if has_work and (forced or self._backoff.ready(loop.time())):
            written = await self._try_write()
            if forced and not written and self._pending:
                await self._spill(len(self._pending))  # R5: a drain ends in the ledger or spool
        self._next_pass_at = loop.time() + self._flush_interval_s
        self._flush_served = max(self._flush_served, ticket)
        self._notify()

    async def _try_write(self) -> bool:
        """Replay the spool, then insert what waits. False (and a backoff) on ``StoreError``."""
        try:
            await self._replay_spool()
            await self._write_pending(len(self._pending))
        except StoreError as exc:
            self.insert_failures += 1
            delay_s = self._backoff.failed(asyncio.get_running_loop().time())
            depth = self.queue_depth + self.spooled_rows
            logger.warning(
                "ledger insert failed: %r; %d rows wait; retry in %.2f s", exc, depth, delay_s
            )
            return False
        self._backoff.succeeded()
        return True

    async def _replay_spool(self) -> None:
        if not len(self._spool):
            return
        entries = await self._spool.read()
        for start in range(0, len(entries), self._batch_size):
            chunk = entries[start : start + self._batch_size]
            self.rows_written += await self._ledger.insert(chunk)
            self.last_write_at = self._clock.now()
            await self._committed(
                [Charge(e.request_id, e.user_id, e.cost_micros, e.charged_at) for e in chunk]
            )
        await self._spool.clear()
        logger.info("replayed %d spooled ledger rows", len(entries))

    async def _write_pending(self, count: int) -> None:
        while count > 0 and self._pending:
            rows = list(itertools.islice(self._pending, min(count, self._batch_size)))
            # Rows leave _pending only after the insert returned (R1).
            self.rows_written += await self._ledger.insert([entry for entry, _ in rows])
            self.last_write_at = self._clock.now()
            self._forget(len(rows))
            count -= len(rows)
            await self._committed([charge for _, charge in rows])

    async def _committed(self, charges: Sequence[Charge]) -> None:
        try:
            await self._counters.committed(charges)
        except StoreError as exc:
            self.counter_failures += 1
            logger.warning("marking %d charges committed failed: %r", len(charges), exc)

    async def _spill(self, count: int) -> None:
        """Move the ``count`` oldest waiting rows to the spool (R1, R6)."""
        rows = [entry for entry, _ in itertools.islice(self._pending, count)]
        was_empty = not len(self._spool)
        await self._spool.append(rows, then=lambda: self._forget(len(rows)))
        # Past queue_max every write pass spills a few rows: warn when the spool starts filling,
        # not once per pass (thousands of lines a minute in an outage, when logs matter most);
        # the writer's retry warnings report the spool's size meanwhile.
        log = logger.warning if was_empty else logger.debug
        log("spooled %d ledger rows (%d in the spool)", len(rows), len(self._spool))

    def _spool_rest(self) -> None:
        """At shutdown, after the tasks and spool operations ended: spool what is left (R5)."""
        rows = [entry for entry, _ in itertools.chain(self._pending, self._incoming)]
        if not rows:
            return
        try:
            self._spool.append_blocking(rows)
        except OSError as exc:
            logger.error("LOST %d ledger rows: no database, no spool: %r", len(rows), exc)
            return
        self._settled += len(rows)
        self._pending.clear()
        self._incoming.clear()
        logger.warning("spooled %d unwritten ledger rows at shutdown", len(rows))

    def _forget(self, count: int) -> None:
        """The ``count`` oldest waiting rows are now in the ledger or the spool."""
        for _ in range(count):
            self._pending.popleft()
        self._settled += count
        self._notify()

    def _notify(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._progress.wait()
