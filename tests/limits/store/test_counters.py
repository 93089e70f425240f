"""The ``CounterStore`` contract, run over memory | fakeredis | the real Redis.

Every adapter passes every test here unchanged. What only the Redis adapter has (its key layout,
key TTLs, a lease shared between processes, behaviour under faults) is in test_redis_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from redis.asyncio import Redis

from limits.periods import Period, PeriodKind, bounds
from limits.ports import Charge, CounterStore
from limits.store.memory import MemoryCounterStore
from limits.store.redis import RedisCounterStore
from tests.conftest import FakeClock

USER = 7
OTHER = 8


def month(clock: FakeClock) -> Period:
    return bounds(PeriodKind.MONTH, clock.now())


def charge(
    clock: FakeClock,
    cost_micros: int,
    request_id: str = "req-1",
    *,
    user_id: int = USER,
    ago_s: float = 0,
    reservation: tuple[str, Period] | None = None,
) -> Charge:
    return Charge(
        request_id=request_id,
        user_id=user_id,
        cost_micros=cost_micros,
        charged_at=clock.now() - timedelta(seconds=ago_s),
        reservation_id=reservation[0] if reservation else None,
        reservation_period=reservation[1] if reservation else None,
    )


async def _delete_prefix(url: str, prefix: str) -> None:
    raw = Redis.from_url(url)
    try:
        keys = [key async for key in raw.scan_iter(match=f"{prefix}:*")]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


@pytest.fixture(params=["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounterStore(clock)
        return
    if request.param == "fakeredis":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        counters = RedisCounterStore(client, clock=clock)
        yield counters
        await counters.close()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("key_prefix")
    counters = RedisCounterStore.from_url(url, clock=clock, prefix=prefix)
    try:
        yield counters
    finally:
        await counters.close()
        await _delete_prefix(url, prefix)


# --- counters ---------------------------------------------------------------------------------


async def test_an_unknown_user_has_spent_nothing(store: CounterStore, clock: FakeClock) -> None:
    assert await store.read(USER, month(clock)) == (0, 0)


async def test_charge_counts_in_day_week_and_month(store: CounterStore, clock: FakeClock) -> None:
    await store.charge([charge(clock, 125)])
    for kind in PeriodKind:
        assert await store.read(USER, bounds(kind, clock.now())) == (125, 0)
    tomorrow = clock.now() + timedelta(days=1)  # 2026-11-19: same week and month
    assert await store.read(USER, bounds(PeriodKind.DAY, tomorrow)) == (0, 0)
    assert await store.read(USER, bounds(PeriodKind.WEEK, tomorrow)) == (125, 0)


async def test_a_batch_adds_up_per_user(store: CounterStore, clock: FakeClock) -> None:
    await store.charge(
        [
            charge(clock, 10, "a"),
            charge(clock, 20, "b"),
            charge(clock, 5, "c", user_id=OTHER),
            charge(clock, 0, "d"),
        ]
    )
    assert await store.read(USER, month(clock)) == (30, 0)
    assert await store.read(OTHER, month(clock)) == (5, 0)


async def test_an_empty_batch_does_nothing(store: CounterStore, clock: FakeClock) -> None:
    await store.charge([])
    await store.committed([])
    assert await store.read(USER, month(clock)) == (0, 0)


async def test_charge_counts_in_the_period_of_charged_at(
    store: CounterStore, clock: FakeClock
) -> None:
    clock.at = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    await store.charge([charge(clock, 40, ago_s=3600)])  # 2026-11-30 23:30
    assert await store.read(USER, bounds(PeriodKind.MONTH, clock.now())) == (0, 0)
    november = bounds(PeriodKind.MONTH, datetime(2026, 11, 30, tzinfo=UTC))
    assert await store.read(USER, november) == (40, 0)


async def test_a_period_long_over_is_left_alone(store: CounterStore, clock: FakeClock) -> None:
    october_day = datetime(2026, 10, 5, 12, tzinfo=UTC)
    await store.charge([Charge("old", USER, 99, october_day)])
    for kind in PeriodKind:
        assert await store.read(USER, bounds(kind, october_day)) == (0, 0)


async def test_large_amounts_stay_exact(store: CounterStore, clock: FakeClock) -> None:
    big = 10**15 + 3  # $1 billion and 3 micro-dollars
    await store.charge([charge(clock, big, "a"), charge(clock, 1, "b")])
    assert await store.read(USER, month(clock)) == (big + 1, 0)
    await store.rebase(USER, {month(clock): big}, 600)
    assert await store.read(USER, month(clock)) == (2 * big + 1, 0)


async def test_read_spent_is_the_spent_that_read_reports(
    store: CounterStore, clock: FakeClock
) -> None:
    period = month(clock)
    assert await store.read_spent(USER, period) == 0
    await store.charge([charge(clock, 125), charge(clock, 5, "b", user_id=OTHER)])
    await store.reserve(USER, period, "r1", 70, None, 60)  # reservations are not spend
    assert await store.read_spent(USER, period) == 125
    assert await store.read(USER, period) == (125, 70)
    assert await store.read_spent(OTHER, period) == 5
    assert await store.read_spent(USER, bounds(PeriodKind.DAY, clock.now())) == 125


async def test_a_large_batch_over_two_days_and_two_reservation_periods(
    store: CounterStore, clock: FakeClock
) -> None:
    """One user's batch is summed per counter and sent in chunks (the Redis store sends at
    most 100 charges per script call): every counter, reservation and pending charge right."""
    day, period = bounds(PeriodKind.DAY, clock.now()), month(clock)
    await store.reserve(USER, period, "res-month", 1_000, None, 60)
    await store.reserve(USER, day, "res-day", 500, None, 60)
    await store.reserve(USER, period, "res-kept", 7, None, 60)
    batch = [charge(clock, n, f"today-{n}") for n in range(1, 151)]  # 11,325 micros
    batch += [charge(clock, 2, f"yesterday-{n}", ago_s=86_400) for n in range(80)]  # 160
    batch[3] = charge(clock, 4, "today-4", reservation=("res-month", period))
    batch[200] = charge(clock, 2, "yesterday-120", ago_s=86_400, reservation=("res-day", day))
    batch.append(charge(clock, 9, "other", user_id=OTHER))
    await store.charge(batch)
    assert await store.read(USER, period) == (11_325 + 160, 7)
    assert await store.read(USER, day) == (11_325, 0)
    yesterday = bounds(PeriodKind.DAY, clock.now() - timedelta(days=1))
    assert await store.read(USER, yesterday) == (160, 0)
    assert await store.read(OTHER, period) == (9, 0)
    await store.committed(batch[:100])  # the rest stays pending: a rebase keeps it
    await store.rebase(USER, {period: 0}, 7 * 86_400)
    assert await store.read_spent(USER, period) == 11_325 + 160 - sum(range(1, 101))


# --- reservations -----------------------------------------------------------------------------


async def test_reserve_without_a_limit_always_admits(store: CounterStore, clock: FakeClock) -> None:
    await store.charge([charge(clock, 10**9)])
    assert await store.reserve(USER, month(clock), "r1", 70, None, 60) == (True, 10**9, 0)
    assert await store.reserve(USER, month(clock), "r2", 30, None, 60) == (True, 10**9, 70)
    assert await store.read(USER, month(clock)) == (10**9, 100)


async def test_reserve_admits_while_spent_plus_reserved_is_below_the_limit(
    store: CounterStore, clock: FakeClock
) -> None:
    period = month(clock)
    await store.charge([charge(clock, 40)])
    assert await store.reserve(USER, period, "r1", 30, 100, 60) == (True, 40, 0)
    assert await store.reserve(USER, period, "r2", 30, 100, 60) == (True, 40, 30)
    assert await store.reserve(USER, period, "r3", 1, 100, 60) == (False, 40, 60)
    assert await store.read(USER, period) == (40, 60)


async def test_a_zero_limit_admits_nothing(store: CounterStore, clock: FakeClock) -> None:
    assert await store.reserve(USER, month(clock), "r1", 0, 0, 60) == (False, 0, 0)
    assert await store.read(USER, month(clock)) == (0, 0)


async def test_reservations_expire(store: CounterStore, clock: FakeClock) -> None:
    period = month(clock)
    assert await store.reserve(USER, period, "r1", 100, 100, 60) == (True, 0, 0)
    clock.advance(59.9)
    assert await store.read(USER, period) == (0, 100)
    assert await store.reserve(USER, period, "r2", 1, 100, 60) == (False, 0, 100)
    clock.advance(0.1)
    assert await store.read(USER, period) == (0, 0)
    assert await store.reserve(USER, period, "r3", 1, 100, 60) == (True, 0, 0)


async def test_release_is_idempotent(store: CounterStore, clock: FakeClock) -> None:
    period = month(clock)
    await store.reserve(USER, period, "r1", 50, None, 60)
    await store.reserve(USER, period, "r2", 20, None, 60)
    await store.release(USER, period, "r1")
    await store.release(USER, period, "r1")
    await store.release(USER, period, "never-held")
    await store.release(OTHER, period, "r2")
    assert await store.read(USER, period) == (0, 20)


async def test_charge_settles_its_reservation(store: CounterStore, clock: FakeClock) -> None:
    period = month(clock)
    await store.reserve(USER, period, "r1", 500, 1000, 60)
    await store.reserve(USER, period, "r2", 100, 1000, 60)
    await store.charge([charge(clock, 120, reservation=("r1", period))])
    assert await store.read(USER, period) == (120, 100)


async def test_reservations_are_per_user_and_period(store: CounterStore, clock: FakeClock) -> None:
    day = bounds(PeriodKind.DAY, clock.now())
    await store.reserve(USER, month(clock), "r1", 50, None, 60)
    assert await store.read(USER, day) == (0, 0)
    assert await store.read(OTHER, month(clock)) == (0, 0)
    assert await store.reserve(OTHER, month(clock), "r1", 5, 10, 60) == (True, 0, 0)
    assert await store.read(USER, month(clock)) == (0, 50)


async def test_concurrent_reservations_overspend_by_at_most_one_amount(
    store: CounterStore, clock: FakeClock
) -> None:
    period, limit, amount = month(clock), 1_000, 70
    await store.charge([charge(clock, 100)])
    results = await asyncio.gather(
        *(store.reserve(USER, period, f"r{i}", amount, limit, 60) for i in range(64))
    )
    admitted = sum(1 for ok, _spent, _before in results if ok)
    spent, reserved = await store.read(USER, period)
    assert reserved == admitted * amount
    assert spent + reserved <= limit + amount
    assert spent + reserved >= limit  # reservations stop only once the limit is reached
    assert all(before < limit - spent for ok, _s, before in results if ok)


# --- pending charges and rebase ---------------------------------------------------------------


async def test_rebase_sets_ledger_total_plus_pending(store: CounterStore, clock: FakeClock) -> None:
    await store.charge([charge(clock, 30, "a"), charge(clock, 12, "b:with:colons")])
    await store.rebase(USER, {month(clock): 1_000}, 600)
    assert await store.read(USER, month(clock)) == (1_042, 0)


async def test_committed_charges_are_no_longer_pending(
    store: CounterStore, clock: FakeClock
) -> None:
    first, second = charge(clock, 30, "a"), charge(clock, 12, "b")
    await store.charge([first, second])
    await store.committed([first, charge(clock, 5, "unknown")])
    await store.rebase(USER, {month(clock): 30}, 600)  # the ledger now holds "a"
    assert await store.read(USER, month(clock)) == (42, 0)


async def test_rebase_drops_pending_older_than_max_age(
    store: CounterStore, clock: FakeClock
) -> None:
    await store.charge([charge(clock, 30, "old", ago_s=601), charge(clock, 12, "new", ago_s=599)])
    await store.rebase(USER, {month(clock): 100}, 600)
    assert await store.read(USER, month(clock)) == (112, 0)
    await store.rebase(USER, {month(clock): 100}, 600)  # "old" stays dropped
    assert await store.read(USER, month(clock)) == (112, 0)


async def test_rebase_counts_pending_only_inside_each_period(
    store: CounterStore, clock: FakeClock
) -> None:
    yesterday = charge(clock, 7, "y", ago_s=86_400)
    await store.charge([yesterday, charge(clock, 3, "t")])
    day = bounds(PeriodKind.DAY, clock.now())
    await store.rebase(USER, {day: 50, month(clock): 500}, 7 * 86_400)
    assert await store.read(USER, day) == (53, 0)
    assert await store.read(USER, month(clock)) == (510, 0)
    week = bounds(PeriodKind.WEEK, clock.now())
    assert await store.read(USER, week) == (10, 0)  # not given: untouched


async def test_rebase_keeps_reservations_and_other_users(
    store: CounterStore, clock: FakeClock
) -> None:
    await store.charge([charge(clock, 9, user_id=OTHER)])
    await store.reserve(USER, month(clock), "r1", 40, None, 60)
    await store.rebase(USER, {month(clock): 0}, 600)
    await store.rebase(USER, {}, 600)
    assert await store.read(USER, month(clock)) == (0, 40)
    assert await store.read(OTHER, month(clock)) == (9, 0)


async def test_rebase_of_a_period_long_over_clears_it(
    store: CounterStore, clock: FakeClock
) -> None:
    october = bounds(PeriodKind.MONTH, datetime(2026, 10, 5, tzinfo=UTC))
    await store.rebase(USER, {october: 500}, 600)
    assert await store.read(USER, october) == (0, 0)


# --- lease, ping, close -----------------------------------------------------------------------


async def test_the_leader_renews_its_lease(store: CounterStore) -> None:
    assert await store.try_lead("refresh", 5)
    assert await store.try_lead("refresh", 5)
    assert await store.try_lead("other-job", 5)


async def test_ping_answers(store: CounterStore) -> None:
    await store.ping()
