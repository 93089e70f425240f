"""``Refresher``: counter := ledger total + pending, one leader, convergence (SPEC §8 inv. 1)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from limits.errors import StoreUnavailable
from limits.periods import PeriodKind, bounds
from limits.recorder import LedgerRecorder
from limits.refresher import Refresher
from limits.store.spool import FileSpool
from tests.conftest import FakeClock
from tests.limits.fakes import AT, FakeCounters, FakeLedger, eventually, make_row

DAY, WEEK, MONTH = (bounds(kind, AT) for kind in PeriodKind)


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def counters(clock: FakeClock) -> FakeCounters:
    return FakeCounters(clock)


@pytest.fixture
def refresher(ledger: FakeLedger, counters: FakeCounters, clock: FakeClock) -> Refresher:
    return Refresher(ledger=ledger, counters=counters, clock=clock, interval_s=0.01)


async def test_rebases_every_user_on_the_ledger_totals_of_the_current_periods(
    refresher: Refresher, ledger: FakeLedger, counters: FakeCounters
) -> None:
    await ledger.insert(
        [
            make_row("today", user_id=1, cost_micros=100)[0],
            make_row("monday", user_id=1, cost_micros=20, at=AT - timedelta(days=2))[0],
            make_row("last-month", user_id=1, cost_micros=3, at=AT - timedelta(days=40))[0],
            make_row("earlier-this-month", user_id=2, cost_micros=7, at=AT - timedelta(days=10))[0],
        ]
    )
    ledger.extra_user_ids.append(3)  # a user without ledger rows: counters go to 0
    assert await refresher.refresh_once() == 3
    assert counters.rebased == [
        (1, {DAY: 100, WEEK: 120, MONTH: 120}, 300.0),
        (2, {DAY: 0, WEEK: 0, MONTH: 7}, 300.0),
        (3, {DAY: 0, WEEK: 0, MONTH: 0}, 300.0),
    ]
    assert refresher.refreshes == 1
    assert refresher.last_refresh_at == AT


async def test_counter_is_ledger_total_plus_pending_charges(
    refresher: Refresher, ledger: FakeLedger, counters: FakeCounters
) -> None:
    committed_entry, committed_charge = make_row("in-ledger", cost_micros=100)
    await counters.charge([committed_charge])
    await ledger.insert([committed_entry])
    await counters.committed([committed_charge])
    await counters.charge([make_row("pending", cost_micros=5)[1]])  # charged, not yet inserted
    counters.spent[(1, DAY.key)] = 999_999  # drift (e.g. a lost charge) that the refresh repairs
    await refresher.refresh_once()
    assert counters.value(1, DAY) == 105
    assert counters.value(1, MONTH) == 105


async def test_pending_charges_older_than_the_bound_are_dropped(
    ledger: FakeLedger, counters: FakeCounters, clock: FakeClock
) -> None:
    refresher = Refresher(
        ledger=ledger, counters=counters, clock=clock, interval_s=1.0, pending_max_age_s=60.0
    )
    await counters.charge([make_row("stale", cost_micros=5, at=AT - timedelta(minutes=2))[1]])
    await counters.charge([make_row("fresh", cost_micros=7)[1]])
    ledger.extra_user_ids.append(1)
    await refresher.refresh_once()
    assert counters.value(1, DAY) == 7
    assert counters.rebased[0][2] == 60.0


async def test_a_batch_between_insert_and_committed_is_off_until_the_next_refresh(
    refresher: Refresher, ledger: FakeLedger, counters: FakeCounters
) -> None:
    """The documented transient window: in the ledger and still pending -> counted twice."""
    entry, charge = make_row("a", cost_micros=10)
    await counters.charge([charge])
    await ledger.insert([entry])
    await refresher.refresh_once()
    assert counters.value(1, DAY) == 20  # the bounded, transient error
    await counters.committed([charge])
    await refresher.refresh_once()
    assert counters.value(1, DAY) == 10


async def test_counters_converge_on_the_ledger_after_traffic_stops(
    refresher: Refresher,
    ledger: FakeLedger,
    counters: FakeCounters,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    recorder = LedgerRecorder(
        counters=counters,
        ledger=ledger,
        spool=FileSpool(tmp_path / "spool.jsonl"),
        flush_interval_s=0.01,
        batch_size=3,
        queue_max=100,
        clock=clock,
    )
    recorder.start()
    try:
        for n in range(10):
            recorder.submit(*make_row(f"r{n}", user_id=n % 3, cost_micros=n * 1_000 + 1))
        await recorder.drain()
    finally:
        await recorder.stop(drain_timeout_s=1.0)
    counters.lose_everything()  # and Redis was flushed too
    await refresher.refresh_once()
    totals = await ledger.totals([DAY, WEEK, MONTH])
    for user_id in range(3):
        for period in (DAY, WEEK, MONTH):
            assert counters.value(user_id, period) == totals[user_id][period]
    assert sum(counters.value(u, DAY) for u in range(3)) == sum(n * 1_000 + 1 for n in range(10))


async def test_a_tick_refreshes_only_with_the_lease(
    refresher: Refresher, ledger: FakeLedger, counters: FakeCounters
) -> None:
    ledger.extra_user_ids.append(1)
    counters.lead = False
    assert await refresher.tick() is False
    assert counters.rebased == []
    counters.lead = True
    assert await refresher.tick() is True
    assert len(counters.rebased) == 1
    assert counters.lead_calls == [("refresh", 0.01), ("refresh", 0.01)]


@pytest.mark.parametrize("where", ["ledger", "counters"])
async def test_a_store_error_is_counted_and_retried_next_tick(
    refresher: Refresher, ledger: FakeLedger, counters: FakeCounters, where: str
) -> None:
    ledger.extra_user_ids.append(1)
    if where == "ledger":
        ledger.fail = StoreUnavailable("database down")
    else:
        counters.fail_rebase = StoreUnavailable("redis down")
    assert await refresher.tick() is False
    assert refresher.failures == 1
    ledger.fail = counters.fail_rebase = None
    assert await refresher.tick() is True


async def test_refresh_once_raises_store_errors(refresher: Refresher, ledger: FakeLedger) -> None:
    ledger.fail = StoreUnavailable("database down")
    with pytest.raises(StoreUnavailable):
        await refresher.refresh_once()


async def test_the_background_loop_refreshes_every_interval(
    refresher: Refresher, ledger: FakeLedger, counters: FakeCounters
) -> None:
    ledger.extra_user_ids.append(1)
    refresher.start()
    try:
        await eventually(lambda: refresher.refreshes >= 3, timeout_s=1.0)
    finally:
        await refresher.stop()
    count = refresher.refreshes
    await refresher.stop()  # idempotent
    assert refresher.refreshes == count


def test_rejects_a_nonpositive_interval(
    ledger: FakeLedger, counters: FakeCounters, clock: FakeClock
) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Refresher(ledger=ledger, counters=counters, clock=clock, interval_s=0)
