"""``SpentCache``: single flight, the staleness bound, own charges counted at once, errors.

The counter store is a gated fake (``read_spent`` waits at a gate, counts its calls, can fail);
the cache's timer is a settable number, so staleness is tested without sleeping. A state
machine checks the two bounds over any interleaving of charges, landings and reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from limits.errors import StoreUnavailable
from limits.periods import Period, PeriodKind, bounds
from limits.ports import Charge, CounterStore
from limits.spent_cache import SpentCache
from tests.limits.enforcer_fakes import run
from tests.limits.fakes import AT

USER = 7
MONTH = bounds(PeriodKind.MONTH, AT)
DAY = bounds(PeriodKind.DAY, AT)


@dataclass
class GatedCounters:
    """The ``read_spent`` part of a ``CounterStore``; other methods are not used here."""

    spent: dict[int, int] = field(default_factory=dict)
    reads: int = 0
    gate: asyncio.Event | None = None
    fail: StoreUnavailable | None = None

    async def read_spent(self, user_id: int, period: Period) -> int:
        self.reads += 1
        if self.gate is not None:  # the request is on its way...
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.spent.get(user_id, 0)  # ...and the store answers what it holds then

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        return await self.read_spent(user_id, period), 0

    async def reserve(
        self, user_id: int, period: Period, rid: str, amount: int, limit: int | None, ttl: float
    ) -> tuple[bool, int, int]:
        raise NotImplementedError

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        raise NotImplementedError

    async def charge(self, charges: Sequence[Charge]) -> None:
        raise NotImplementedError

    async def committed(self, charges: Sequence[Charge]) -> None:
        raise NotImplementedError

    async def rebase(self, user_id: int, totals: Mapping[Period, int], max_age_s: float) -> None:
        raise NotImplementedError

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class Timer:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def make(max_age_s: float = 0.05) -> tuple[SpentCache, GatedCounters, Timer]:
    counters, timer = GatedCounters(), Timer()
    port: CounterStore = counters  # mypy: the fake is a CounterStore
    return SpentCache(port, max_age_s=max_age_s, timer=timer), counters, timer


def paid(cost: int, request_id: str = "r", *, days: float = 0) -> Charge:
    return Charge(request_id, USER, cost, AT + timedelta(days=days))


async def _wait_for_reads(counters: GatedCounters, n: int) -> None:
    for _ in range(100):
        if counters.reads >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {n} store reads, saw {counters.reads}")


# ---------------------------------------------------------------- single flight


async def test_concurrent_reads_share_one_store_read() -> None:
    cache, counters, _ = make()
    counters.spent[USER] = 40
    counters.gate = asyncio.Event()
    readers = [asyncio.ensure_future(cache.spent(USER, MONTH)) for _ in range(20)]
    await _wait_for_reads(counters, 1)
    counters.gate.set()
    assert await asyncio.gather(*readers) == [40] * 20
    assert counters.reads == 1
    assert (cache.reads, cache.joins, cache.hits) == (1, 19, 0)


async def test_without_a_cache_concurrent_reads_still_share_one() -> None:
    cache, counters, _ = make(max_age_s=0)
    counters.gate = asyncio.Event()
    readers = [asyncio.ensure_future(cache.spent(USER, MONTH)) for _ in range(5)]
    await _wait_for_reads(counters, 1)
    counters.gate.set()
    await asyncio.gather(*readers)
    assert counters.reads == 1
    counters.gate = None
    await cache.spent(USER, MONTH)
    await cache.spent(USER, MONTH)
    assert counters.reads == 3  # one after the other: each reads the store


async def test_users_and_periods_are_read_separately() -> None:
    cache, counters, _ = make()
    counters.spent = {USER: 5, USER + 1: 9}
    assert await cache.spent(USER, MONTH) == 5
    assert await cache.spent(USER + 1, MONTH) == 9
    assert await cache.spent(USER, DAY) == 5
    assert counters.reads == 3


# ---------------------------------------------------------------- staleness bound


async def test_an_answer_is_reused_for_max_age_after_its_read_started() -> None:
    cache, counters, timer = make(max_age_s=0.05)
    counters.spent[USER] = 100
    assert await cache.spent(USER, MONTH) == 100
    counters.spent[USER] = 250  # another process charged
    timer.now += 0.049
    assert await cache.spent(USER, MONTH) == 100  # within the bound: cached
    timer.now += 0.002
    assert await cache.spent(USER, MONTH) == 250  # past the bound: read again
    assert counters.reads == 2
    assert cache.hits == 1


async def test_age_counts_from_when_the_read_started() -> None:
    cache, counters, timer = make(max_age_s=0.05)
    counters.gate = asyncio.Event()
    reader = asyncio.ensure_future(cache.spent(USER, MONTH))
    await _wait_for_reads(counters, 1)
    timer.now += 0.04  # a slow round trip
    counters.gate.set()
    await reader
    timer.now += 0.011  # past 0.05 after the read started, 0.011 after it answered
    counters.gate = None
    await cache.spent(USER, MONTH)
    assert counters.reads == 2


# ---------------------------------------------------------------- own charges


async def test_own_charges_count_at_once_while_cached() -> None:
    cache, counters, _ = make()
    counters.spent[USER] = 100
    assert await cache.spent(USER, MONTH) == 100
    cache.settled(paid(30))
    assert await cache.spent(USER, MONTH) == 130
    cache.settled(paid(5, "r2"))
    assert await cache.spent(USER, MONTH) == 135
    assert counters.reads == 1


async def test_an_unlanded_charge_counts_in_a_fresh_read() -> None:
    cache, counters, timer = make()
    cache.settled(paid(30))  # settled, still on its way to the store
    assert await cache.spent(USER, MONTH) == 30
    timer.now += 1
    counters.spent[USER] = 30  # it landed...
    cache.landed([paid(30)])  # ...and the recorder says so
    assert await cache.spent(USER, MONTH) == 30  # counted once
    timer.now += 1
    assert await cache.spent(USER, MONTH) == 30


async def test_a_charge_settled_during_a_read_counts() -> None:
    cache, counters, _ = make()
    counters.gate = asyncio.Event()
    reader = asyncio.ensure_future(cache.spent(USER, MONTH))
    await _wait_for_reads(counters, 1)
    cache.settled(paid(12))
    counters.gate.set()
    assert await reader == 12


async def test_a_charge_landing_during_a_read_is_counted_twice_only_briefly() -> None:
    cache, counters, timer = make(max_age_s=0.05)
    cache.settled(paid(10))
    counters.gate = asyncio.Event()
    reader = asyncio.ensure_future(cache.spent(USER, MONTH))
    await _wait_for_reads(counters, 1)
    counters.spent[USER] = 10  # the charge reaches the store before the read does
    cache.landed([paid(10)])
    counters.gate.set()
    assert await reader == 20  # high, never low (rule 3) ...
    timer.now += 0.051
    assert await cache.spent(USER, MONTH) == 10  # ... and for at most max_age


async def test_a_charge_outside_a_reading_period_is_not_added_to_it() -> None:
    cache, _, _ = make()
    assert await cache.spent(USER, DAY) == 0
    cache.settled(paid(7, days=1))  # tomorrow: another day
    assert await cache.spent(USER, DAY) == 0
    cache.settled(paid(3))
    assert await cache.spent(USER, DAY) == 3


async def test_zero_cost_and_unknown_landings_change_nothing() -> None:
    cache, _, _ = make()
    cache.settled(paid(0))
    cache.landed([paid(0), paid(99, "never-settled")])
    assert await cache.spent(USER, MONTH) == 0


# ---------------------------------------------------------------- errors and cancellation


async def test_errors_reach_every_joined_caller_and_are_not_cached() -> None:
    cache, counters, _ = make()
    counters.gate, counters.fail = asyncio.Event(), StoreUnavailable("down")
    readers = [asyncio.ensure_future(cache.spent(USER, MONTH)) for _ in range(3)]
    await _wait_for_reads(counters, 1)
    counters.gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(result, StoreUnavailable) for result in results)
    counters.gate, counters.fail = None, None
    counters.spent[USER] = 8
    assert await cache.spent(USER, MONTH) == 8
    assert counters.reads == 2


async def test_a_cancelled_leader_does_not_fail_the_callers_that_joined() -> None:
    cache, counters, _ = make()
    counters.spent[USER] = 4
    counters.gate = asyncio.Event()
    leader = asyncio.ensure_future(cache.spent(USER, MONTH))
    await _wait_for_reads(counters, 1)
    joined = asyncio.ensure_future(cache.spent(USER, MONTH))
    await asyncio.sleep(0)
    leader.cancel()
    await _wait_for_reads(counters, 2)  # the joined caller reads on its own
    counters.gate.set()
    assert await joined == 4
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_cancelled_joiner_does_not_disturb_the_read() -> None:
    cache, counters, _ = make()
    counters.gate = asyncio.Event()
    leader = asyncio.ensure_future(cache.spent(USER, MONTH))
    await _wait_for_reads(counters, 1)
    joiner = asyncio.ensure_future(cache.spent(USER, MONTH))
    await asyncio.sleep(0)
    joiner.cancel()
    counters.gate.set()
    assert await leader == 0
    assert joiner.cancelled()


async def test_expired_answers_are_swept() -> None:
    cache, _, timer = make(max_age_s=0.05)
    for user_id in range(50):
        await cache.spent(user_id, MONTH)
    timer.now += 2  # past max_age and the sweep interval
    await cache.spent(999, MONTH)  # a store read sweeps
    assert list(cache._readings) == [999]


def test_a_negative_max_age_is_refused() -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        make(max_age_s=-1)


# ---------------------------------------------------------------- the bounds, as a property


class SpentCacheMachine(RuleBasedStateMachine):
    """Own charges are settled, then land in the store (in order); other processes charge the
    store directly; time passes; reads happen. Whatever the interleaving:

    1. A read is never below this process's own settled spend (rule 3).
    2. A read is never below what the store held ``max_age_s`` before it (rule 2/4).
    3. A read is never above the store now plus what this process has settled (it may count a
       charge twice only while it is landing: bounded by own charges).
    """

    MAX_AGE_S = 0.05

    def __init__(self) -> None:
        super().__init__()
        self.cache, self.counters, self.timer = make(self.MAX_AGE_S)
        self.unlanded: list[Charge] = []
        self.own_settled = 0
        self.history: list[tuple[float, int]] = [(self.timer.now, 0)]  # (time, store value)
        self.next_id = 0

    def _store(self, value: int) -> None:
        self.counters.spent[USER] = value
        self.history.append((self.timer.now, value))

    @rule(cost=st.integers(1, 1_000))
    def settle(self, cost: int) -> None:
        self.next_id += 1
        charge = paid(cost, f"r{self.next_id}")
        self.cache.settled(charge)
        self.unlanded.append(charge)
        self.own_settled += cost

    @rule(count=st.integers(1, 3))
    def land(self, count: int) -> None:
        landing, self.unlanded = self.unlanded[:count], self.unlanded[count:]
        self._store(self.counters.spent.get(USER, 0) + sum(c.cost_micros for c in landing))
        self.cache.landed(landing)

    @rule(cost=st.integers(1, 1_000))
    def other_process_charges(self, cost: int) -> None:
        self._store(self.counters.spent.get(USER, 0) + cost)

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.03, 0.05, 0.2]))
    def time_passes(self, seconds: float) -> None:
        self.timer.now += seconds

    @rule()
    def read(self) -> None:
        answer = run(self.cache.spent(USER, MONTH))
        now = self.timer.now
        store_now = self.counters.spent.get(USER, 0)
        old_enough = [v for at, v in self.history if at < now - self.MAX_AGE_S - 1e-9]
        assert answer >= self.own_settled
        assert answer >= (old_enough[-1] if old_enough else 0)
        assert answer <= store_now + sum(c.cost_micros for c in self.unlanded) + self.own_settled

    @invariant()
    def unlanded_is_tracked_exactly(self) -> None:
        expected = sum(c.cost_micros for c in self.unlanded)
        assert self.cache._unlanded.get(USER, 0) == expected


TestSpentCacheMachine = SpentCacheMachine.TestCase
TestSpentCacheMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
