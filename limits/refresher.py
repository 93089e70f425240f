"""``Refresher``: rebuilds the spend counters from the ledger, the source of truth (SPEC §8).

The rule
    For every user U and every current period P (day, week and month containing ``now``):

        counter(U, P) := ledger_total(U, P) + pending(U, P)

    where ``pending(U, P)`` is the sum of U's charges inside P that the recorder has charged to
    the counters but not yet marked committed (i.e. not yet known to be in the ledger). Pending
    charges older than ``pending_max_age_s`` (by ``charged_at``) are dropped first, so a charge
    whose ``committed`` call was lost cannot inflate a counter for longer than that.

Why an in-flight charge is neither lost nor double-counted
    The recorder (``limits/recorder.py``) takes every row through three steps in this order:
    (1) ``counters.charge``: counter += cost, the charge becomes pending; (2) ``ledger.insert``;
    (3) ``counters.committed``: no longer pending. At any moment outside the window below, a
    charge is in exactly one of the two terms: pending and not in the ledger between (1) and
    (2), in the ledger and not pending after (3). A refresh reads the ledger totals first and
    then calls ``counters.rebase``, which reads the pending set and sets the counter in one
    atomic step of the counter store, so charges arriving meanwhile are not overwritten.

The transient error window (the bound)
    The ledger read (time T1) and the rebase (time T2) are not one transaction. A batch inserted
    before T1 and marked committed after T2 is counted twice (in the total and as pending); a
    batch inserted after T1 and committed before T2 is missed. Either error is at most the cost
    of the batches in flight during the refresh, and lasts until the next refresh (one interval),
    which sees them in exactly one term. A row whose counter charge failed (store down) is
    missing from the counter until the first refresh after its insert.

Convergence (SPEC §8 inv. 1)
    After traffic stops and the recorder has drained, nothing is pending and nothing is in
    flight, so one refresh sets every counter to the ledger sum for its user and period, to the
    micro-dollar. A restarted or flushed Redis (counters and pending set gone) is right again
    after the next refresh, i.e. within one interval (plus one flush interval for rows that were
    still on their way to the ledger). During a database outage longer than
    ``pending_max_age_s``, counters undercount the rows still waiting to be written.

Scheduling
    ``start`` runs a tick every ``interval_s``; a tick refreshes only if
    ``counters.try_lead("refresh", interval_s)`` grants this process the lease, so one replica
    does the work. A ``StoreError`` is logged and counted; the next tick retries.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from limits.errors import StoreError
from limits.periods import PeriodKind, bounds
from limits.ports import Clock, CounterStore, LedgerStore
from limits.supervisor import Supervisor

__all__ = ["Refresher"]

logger = logging.getLogger(__name__)

LEASE_NAME = "refresh"


class Refresher:
    """Periodically sets counters to ``ledger total + pending`` (see the module docstring).

    Metrics (plain attributes): ``refreshes``, ``failures``, ``users_rebased`` (in the last
    refresh), ``last_refresh_at``.
    """

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        counters: CounterStore,
        clock: Clock,
        interval_s: float,
        pending_max_age_s: float = 300.0,
        restart_delay_s: float = 1.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._ledger = ledger
        self._counters = counters
        self._clock = clock
        self._interval_s = interval_s
        self._pending_max_age_s = pending_max_age_s
        self._loop = Supervisor("counter-refresher", self._run, restart_delay_s)
        self.refreshes = 0
        self.failures = 0
        self.users_rebased = 0
        self.last_refresh_at: datetime | None = None

    async def refresh_once(self) -> int:
        """Rebase every user's current day, week and month counters on the ledger.

        Returns the number of users rebased. Raises ``StoreError`` (ledger or counters).
        """
        at = self._clock.now()
        periods = [bounds(kind, at) for kind in PeriodKind]
        totals = await self._ledger.totals(periods)
        users = set(await self._ledger.user_ids()) | set(totals)
        for user_id in sorted(users):
            user_totals = totals.get(user_id, {})
            await self._counters.rebase(
                user_id,
                {period: user_totals.get(period, 0) for period in periods},
                self._pending_max_age_s,
            )
        self.refreshes += 1
        self.users_rebased = len(users)
        self.last_refresh_at = at
        return len(users)

    async def tick(self) -> bool:
        """One scheduled round: refresh if this process holds the lease.

        Returns whether it refreshed. Never raises ``StoreError``: it is logged and counted.
        """
        try:
            if not await self._counters.try_lead(LEASE_NAME, self._interval_s):
                return False
            await self.refresh_once()
        except StoreError as exc:
            self.failures += 1
            logger.warning("counter refresh failed: %r; retrying in %.1f s", exc, self._interval_s)
            return False
        return True

    def start(self) -> None:
        """Tick now and then every ``interval_s`` in a background task."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop the background task (waits for it to end)."""
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self._interval_s)
