"""``CachedDirectory``: positive and negative caching, revision polling, single flight, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from limits.directory import CachedDirectory
from limits.errors import StoreUnavailable
from limits.periods import PeriodKind
from limits.ports import Principal, UserLimits
from limits.scopes import LimitConfig
from tests.conftest import FakeClock
from tests.limits.fakes import FakeDirectory, eventually

ALICE = Principal(user_id=1, user_name="alice", key_id=10)


@pytest.fixture
def inner() -> FakeDirectory:
    return FakeDirectory(keys={"hash-alice": ALICE})


@pytest.fixture
async def directory(inner: FakeDirectory, clock: FakeClock) -> AsyncIterator[CachedDirectory]:
    cached = CachedDirectory(inner, clock=clock, poll_interval_s=1.0)
    yield cached
    await cached.stop()


async def test_a_known_key_is_looked_up_once(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    assert await directory.principal_for_key("hash-alice") == ALICE
    assert await directory.principal_for_key("hash-alice") == ALICE
    assert inner.calls["principal_for_key"] == 1
    assert (directory.hits, directory.misses) == (1, 1)


async def test_an_unknown_key_is_cached_too(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    for _ in range(3):
        assert await directory.principal_for_key("hash-nobody") is None
    assert inner.calls["principal_for_key"] == 1


async def test_limit_config_and_user_limits_are_cached(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    inner.config = LimitConfig(enabled=True, period=PeriodKind.DAY, default_limit_micros=5)
    inner.limits[1] = UserLimits(7, {"team": 3})
    for _ in range(2):
        assert await directory.limit_config() == inner.config
        assert await directory.user_limits(1) == UserLimits(7, {"team": 3})
        assert await directory.user_limits(2) == UserLimits(None)
    assert inner.calls["limit_config"] == 1
    assert inner.calls["user_limits"] == 2


async def test_the_revision_is_read_at_most_once_per_interval(
    directory: CachedDirectory, inner: FakeDirectory, clock: FakeClock
) -> None:
    await directory.principal_for_key("hash-alice")
    clock.advance(0.5)
    await directory.limit_config()
    assert inner.calls["revision"] == 1
    clock.advance(0.5)
    await directory.limit_config()
    assert inner.calls["revision"] == 2


async def test_a_revoked_key_stops_working_within_the_poll_interval(
    directory: CachedDirectory, inner: FakeDirectory, clock: FakeClock
) -> None:
    assert await directory.principal_for_key("hash-alice") == ALICE
    inner.revoke("hash-alice")
    clock.advance(0.9)
    assert await directory.principal_for_key("hash-alice") == ALICE  # still inside the interval
    clock.advance(0.1)
    assert await directory.principal_for_key("hash-alice") is None
    assert directory.invalidations == 1


async def test_a_changed_limit_takes_effect_within_the_poll_interval(
    directory: CachedDirectory, inner: FakeDirectory, clock: FakeClock
) -> None:
    assert await directory.limit_config() == LimitConfig()
    inner.config = LimitConfig(enabled=True)
    inner.rev += 1
    clock.advance(1.0)
    assert await directory.limit_config() == LimitConfig(enabled=True)


async def test_an_unchanged_revision_keeps_the_caches(
    directory: CachedDirectory, inner: FakeDirectory, clock: FakeClock
) -> None:
    await directory.principal_for_key("hash-alice")
    clock.advance(5.0)
    await directory.principal_for_key("hash-alice")
    assert inner.calls["revision"] == 2
    assert inner.calls["principal_for_key"] == 1


async def test_a_clock_that_jumps_back_polls_again(
    directory: CachedDirectory, inner: FakeDirectory, clock: FakeClock
) -> None:
    await directory.limit_config()
    clock.advance(-10.0)
    await directory.limit_config()
    assert inner.calls["revision"] == 2


async def test_concurrent_misses_share_one_lookup(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    await directory.revision()
    inner.gate = asyncio.Event()
    lookups = [asyncio.create_task(directory.principal_for_key("hash-alice")) for _ in range(20)]
    await eventually(lambda: inner.calls["principal_for_key"] == 1)
    await asyncio.sleep(0.01)
    inner.gate.set()
    assert await asyncio.gather(*lookups) == [ALICE] * 20
    assert inner.calls["principal_for_key"] == 1


async def test_one_cancelled_caller_does_not_fail_the_others(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    await directory.revision()
    inner.gate = asyncio.Event()
    first = asyncio.create_task(directory.principal_for_key("hash-alice"))
    second = asyncio.create_task(directory.principal_for_key("hash-alice"))
    await eventually(lambda: inner.calls["principal_for_key"] == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    inner.gate.set()
    assert await second == ALICE
    assert await directory.principal_for_key("hash-alice") == ALICE
    assert inner.calls["principal_for_key"] == 1


async def test_an_answer_from_before_an_invalidation_is_not_cached(
    directory: CachedDirectory, inner: FakeDirectory, clock: FakeClock
) -> None:
    await directory.revision()
    inner.gate = asyncio.Event()
    before = asyncio.create_task(directory.principal_for_key("hash-alice"))
    await eventually(lambda: inner.calls["principal_for_key"] == 1)
    inner.revoke("hash-alice")  # the in-flight lookup may already have read the key row
    clock.advance(1.0)
    await directory.revision()  # sees the new revision: drops caches and in-flight lookups
    inner.gate.set()
    assert await before == ALICE  # that caller got the answer it asked for...
    assert await directory.principal_for_key("hash-alice") is None  # ...but it was not kept
    assert inner.calls["principal_for_key"] == 2


async def test_a_store_error_propagates_and_is_not_cached(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    inner.fail = StoreUnavailable("database down")
    with pytest.raises(StoreUnavailable):
        await directory.principal_for_key("hash-alice")
    with pytest.raises(StoreUnavailable):
        await directory.limit_config()
    inner.fail = None
    assert await directory.principal_for_key("hash-alice") == ALICE


async def test_a_failed_poll_keeps_serving_verified_entries_for_a_bounded_time(
    inner: FakeDirectory, clock: FakeClock
) -> None:
    directory = CachedDirectory(inner, clock=clock, poll_interval_s=1.0, max_stale_s=10.0)
    assert await directory.principal_for_key("hash-alice") == ALICE
    inner.fail_revision = inner.fail = StoreUnavailable("database down")
    clock.advance(5.0)
    assert await directory.principal_for_key("hash-alice") == ALICE  # verified 5 s ago
    assert directory.poll_failures == 1
    with pytest.raises(StoreUnavailable):
        await directory.principal_for_key("hash-never-seen")  # never fail open
    clock.advance(6.0)
    with pytest.raises(StoreUnavailable):
        await directory.principal_for_key("hash-alice")  # unverifiable for too long


async def test_revision_raises_store_errors(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    inner.fail_revision = StoreUnavailable("database down")
    with pytest.raises(StoreUnavailable):
        await directory.revision()


async def test_invalidate_drops_everything_now(
    directory: CachedDirectory, inner: FakeDirectory
) -> None:
    await directory.principal_for_key("hash-alice")
    directory.invalidate()
    await directory.principal_for_key("hash-alice")
    assert inner.calls["principal_for_key"] == 2


async def test_the_key_cache_is_bounded(inner: FakeDirectory, clock: FakeClock) -> None:
    directory = CachedDirectory(inner, clock=clock, max_entries=2)
    for name in ("a", "b", "c"):
        await directory.principal_for_key(name)
    await directory.principal_for_key("c")
    await directory.principal_for_key("a")  # the oldest entry was dropped
    assert inner.calls["principal_for_key"] == 4


async def test_the_background_poller_notices_changes_while_idle(
    inner: FakeDirectory, clock: FakeClock
) -> None:
    directory = CachedDirectory(inner, clock=clock, poll_interval_s=0.005)
    await directory.principal_for_key("hash-alice")
    directory.start()
    try:
        inner.revoke("hash-alice")
        await eventually(lambda: directory.invalidations == 1, timeout_s=1.0)
    finally:
        await directory.stop()
    assert inner.calls["principal_for_key"] == 1  # nothing was asked meanwhile
    assert await directory.principal_for_key("hash-alice") is None


async def test_stop_cancels_lookups_in_flight(inner: FakeDirectory, clock: FakeClock) -> None:
    directory = CachedDirectory(inner, clock=clock)
    await directory.revision()
    inner.gate = asyncio.Event()
    waiting = asyncio.create_task(directory.principal_for_key("hash-alice"))
    await eventually(lambda: inner.calls["principal_for_key"] == 1)
    await directory.stop()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_running_poller_keeps_the_poll_off_the_request_path(
    inner: FakeDirectory, clock: FakeClock
) -> None:
    directory = CachedDirectory(inner, clock=clock, poll_interval_s=10.0)
    await directory.principal_for_key("hash-alice")  # polls: the first access always does
    directory.start()
    try:
        assert inner.calls["revision"] == 1
        clock.advance(14.9)  # due, but within the poller's slack: its turn
        await directory.principal_for_key("hash-alice")
        await directory.limit_config()
        assert inner.calls["revision"] == 1
        clock.advance(0.2)  # 1.5 intervals without a poll: the poller is late, poll inline
        await directory.principal_for_key("hash-alice")
        assert inner.calls["revision"] == 2
    finally:
        await directory.stop()
