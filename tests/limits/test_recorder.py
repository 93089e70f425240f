"""``LedgerRecorder``: counters first, then batched ledger writes, retries and the spool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from limits.errors import StoreUnavailable
from limits.ports import Charge, Spool
from limits.recorder import LedgerRecorder
from limits.store.spool import FileSpool
from tests.conftest import FakeClock
from tests.limits.fakes import FakeCounters, FakeLedger, FlakySpool, eventually, make_row, submit

MakeRecorder = Callable[..., LedgerRecorder]


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def counters(clock: FakeClock, ledger: FakeLedger) -> FakeCounters:
    return FakeCounters(clock, journal=ledger.journal)  # one journal: the order of all steps


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.spool.jsonl"


@pytest.fixture
async def make_recorder(
    counters: FakeCounters, ledger: FakeLedger, clock: FakeClock, spool_path: Path
) -> AsyncIterator[MakeRecorder]:
    """Builds started recorders (fast intervals unless overridden) and stops them afterwards."""
    made: list[LedgerRecorder] = []

    def make(
        *,
        flush_interval_s: float = 10.0,
        batch_size: int = 100,
        queue_max: int = 1000,
        spool: Spool | None = None,
        start: bool = True,
        charge_interval_s: float = 0.01,
        on_charged: Callable[[Sequence[Charge]], None] | None = None,
    ) -> LedgerRecorder:
        recorder = LedgerRecorder(
            counters=counters,
            ledger=ledger,
            spool=FileSpool(spool_path) if spool is None else spool,  # an empty spool is falsy
            flush_interval_s=flush_interval_s,
            batch_size=batch_size,
            queue_max=queue_max,
            clock=clock,
            retry_initial_s=0.005,
            retry_max_s=0.02,
            restart_delay_s=0.005,
            charge_interval_s=charge_interval_s,
            on_charged=on_charged,
        )
        if start:
            recorder.start()
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        await recorder.stop(drain_timeout_s=0.05)


async def test_counters_see_a_charge_within_milliseconds(
    make_recorder: MakeRecorder, counters: FakeCounters, ledger: FakeLedger
) -> None:
    recorder = make_recorder(flush_interval_s=10.0)
    submit(recorder, "r1")
    await eventually(lambda: counters.charged == ["r1"], timeout_s=0.1)
    assert ledger.rows == {}  # the ledger write waits for the flush interval
    assert recorder.queue_depth == 1


async def test_charge_then_insert_then_committed(
    make_recorder: MakeRecorder, ledger: FakeLedger
) -> None:
    recorder = make_recorder()
    submit(recorder, "a", "b", "c")
    await recorder.drain()
    ids = ("a", "b", "c")
    assert ledger.journal == [("charge", ids), ("insert", ids), ("committed", ids)]
    assert recorder.rows_written == 3
    assert recorder.queue_depth == 0


async def test_a_full_batch_is_written_before_the_interval(
    make_recorder: MakeRecorder, ledger: FakeLedger
) -> None:
    recorder = make_recorder(flush_interval_s=10.0, batch_size=3)
    submit(recorder, "a", "b")
    await asyncio.sleep(0.03)
    assert ledger.batches == []
    submit(recorder, "c")
    await eventually(lambda: ledger.batches == [["a", "b", "c"]], timeout_s=0.5)


async def test_a_partial_batch_is_written_after_the_interval(
    make_recorder: MakeRecorder, ledger: FakeLedger
) -> None:
    recorder = make_recorder(flush_interval_s=0.05, batch_size=100)
    submit(recorder, "a")
    await eventually(lambda: ledger.batches == [["a"]], timeout_s=0.5)
    assert recorder.last_write_at is not None


async def test_inserts_are_split_into_batches(
    make_recorder: MakeRecorder, ledger: FakeLedger
) -> None:
    recorder = make_recorder(batch_size=2)
    submit(recorder, "a", "b", "c", "d", "e")
    await recorder.drain()
    assert ledger.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_database_outage_then_recovery_loses_and_duplicates_nothing(
    make_recorder: MakeRecorder, ledger: FakeLedger, counters: FakeCounters
) -> None:
    ledger.fail = StoreUnavailable("database down")
    recorder = make_recorder(flush_interval_s=0.01)
    submit(recorder, "a", "b", "c")
    await eventually(lambda: recorder.insert_failures >= 3)
    assert ledger.rows == {}
    assert recorder.queue_depth == 3
    assert counters.charged == ["a", "b", "c"]  # counters were charged anyway
    assert counters.committed_ids == []
    ledger.fail = None
    await eventually(lambda: len(ledger.rows) == 3)
    assert recorder.rows_written == 3
    assert ledger.reoffered == 0
    assert sorted(counters.committed_ids) == ["a", "b", "c"]
    assert recorder.queue_depth == 0


async def test_past_queue_max_the_oldest_rows_go_to_the_spool(
    make_recorder: MakeRecorder, ledger: FakeLedger, spool_path: Path
) -> None:
    ledger.fail = StoreUnavailable("database down")
    recorder = make_recorder(flush_interval_s=0.01, queue_max=2)
    submit(recorder, "a", "b", "c", "d", "e")
    await eventually(lambda: recorder.spooled_rows == 3)
    assert recorder.queue_depth == 2
    assert [e.request_id for e in FileSpool(spool_path).read()] == ["a", "b", "c"]
    ledger.fail = None
    await eventually(lambda: len(ledger.rows) == 5 and recorder.spooled_rows == 0)
    assert ledger.batches[0] == ["a", "b", "c"]  # the spool is replayed first
    assert ledger.reoffered == 0
    assert FileSpool(spool_path).read() == []


async def test_a_spool_left_by_a_previous_run_is_replayed_at_start(
    make_recorder: MakeRecorder, ledger: FakeLedger, counters: FakeCounters, spool_path: Path
) -> None:
    FileSpool(spool_path).append([make_row("old1")[0], make_row("old2")[0]])
    recorder = make_recorder()
    await eventually(lambda: set(ledger.rows) == {"old1", "old2"})
    await eventually(lambda: recorder.spooled_rows == 0)
    assert counters.charged == []  # the previous run charged them; no second charge
    assert sorted(counters.committed_ids) == ["old1", "old2"]
    assert len(FileSpool(spool_path)) == 0


async def test_a_torn_spool_line_is_skipped_and_the_rest_replayed(
    make_recorder: MakeRecorder, ledger: FakeLedger, spool_path: Path
) -> None:
    FileSpool(spool_path).append([make_row("good1")[0], make_row("good2")[0]])
    with spool_path.open("ab") as file:
        file.write(b'{"v": 1, "request_id": "torn", "user_')  # the crash hit mid-append
    make_recorder()
    await eventually(lambda: set(ledger.rows) == {"good1", "good2"})


async def test_stop_drains_everything_into_the_ledger(
    make_recorder: MakeRecorder, ledger: FakeLedger, spool_path: Path
) -> None:
    recorder = make_recorder(flush_interval_s=10.0)
    submit(recorder, "a", "b")
    await recorder.stop(drain_timeout_s=1.0)
    assert set(ledger.rows) == {"a", "b"}
    assert len(FileSpool(spool_path)) == 0


async def test_stop_during_an_outage_spools_the_rows(
    make_recorder: MakeRecorder, ledger: FakeLedger, spool_path: Path
) -> None:
    ledger.fail = StoreUnavailable("database down")
    recorder = make_recorder()
    submit(recorder, "a", "b")
    await recorder.stop(drain_timeout_s=1.0)  # the drain spools what the database refuses
    assert [e.request_id for e in FileSpool(spool_path).read()] == ["a", "b"]
    assert recorder.queue_depth == 0


async def test_stop_spools_rows_stuck_in_a_hung_insert(
    make_recorder: MakeRecorder, ledger: FakeLedger, spool_path: Path
) -> None:
    ledger.gate = asyncio.Event()  # the database never answers
    recorder = make_recorder(flush_interval_s=0.01)
    submit(recorder, "a", "b", "c")
    await eventually(lambda: ledger.attempts == 1)
    await recorder.stop(drain_timeout_s=0.05)
    assert ledger.rows == {}
    assert [e.request_id for e in FileSpool(spool_path).read()] == ["a", "b", "c"]


async def test_drain_during_an_outage_returns_once_rows_are_spooled(
    make_recorder: MakeRecorder, ledger: FakeLedger
) -> None:
    ledger.fail = StoreUnavailable("database down")
    recorder = make_recorder()
    submit(recorder, "a")
    await recorder.drain()
    assert recorder.spooled_rows == 1
    ledger.fail = None
    await recorder.drain()  # a later drain replays the spool
    assert set(ledger.rows) == {"a"}
    assert recorder.spooled_rows == 0


async def test_a_counter_failure_does_not_hold_the_ledger(
    make_recorder: MakeRecorder, ledger: FakeLedger, counters: FakeCounters
) -> None:
    counters.fail_charge = StoreUnavailable("redis down")
    counters.fail_committed = StoreUnavailable("redis down")
    recorder = make_recorder()
    submit(recorder, "a")
    await recorder.drain()
    assert set(ledger.rows) == {"a"}
    assert recorder.counter_failures == 2


async def test_a_failing_spool_keeps_rows_in_memory(
    make_recorder: MakeRecorder, counters: FakeCounters, ledger: FakeLedger, spool_path: Path
) -> None:
    spool = FlakySpool(spool_path)
    spool.fail_append = True
    ledger.fail = StoreUnavailable("database down")
    recorder = make_recorder(flush_interval_s=0.01, queue_max=1, spool=spool)
    submit(recorder, "a", "b", "c")
    await eventually(lambda: counters.charged == ["a", "b", "c"])
    await asyncio.sleep(0.03)  # spilling fails over and over; the writer restarts
    assert recorder.queue_depth == 3
    spool.fail_append = False
    await eventually(lambda: recorder.spooled_rows == 2 and recorder.queue_depth == 1)
    ledger.fail = None
    await eventually(lambda: set(ledger.rows) == {"a", "b", "c"})


async def test_a_row_submitted_after_stop_goes_to_the_spool(
    make_recorder: MakeRecorder, spool_path: Path
) -> None:
    recorder = make_recorder()
    await recorder.stop(drain_timeout_s=0.1)
    submit(recorder, "late")
    assert [e.request_id for e in FileSpool(spool_path).read()] == ["late"]


async def test_drain_needs_a_started_recorder(
    make_recorder: MakeRecorder, spool_path: Path
) -> None:
    recorder = make_recorder(start=False)
    await recorder.drain()  # nothing outstanding: fine
    submit(recorder, "a")
    with pytest.raises(RuntimeError, match="started"):
        await recorder.drain()
    await recorder.stop(drain_timeout_s=0.1)  # never started: spools what was submitted
    assert [e.request_id for e in FileSpool(spool_path).read()] == ["a"]


async def test_rejects_nonsense_sizes(make_recorder: MakeRecorder) -> None:
    with pytest.raises(ValueError, match="positive"):
        make_recorder(batch_size=0, start=False)


async def test_with_neither_database_nor_disk_stop_and_submit_log_the_loss(
    make_recorder: MakeRecorder,
    ledger: FakeLedger,
    spool_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = FlakySpool(spool_path)
    recorder = make_recorder(spool=spool)
    ledger.gate = asyncio.Event()  # the database hangs
    spool.fail_append = True  # and the disk is full
    submit(recorder, "a")
    await recorder.stop(drain_timeout_s=0.02)
    assert "LOST 1 ledger rows" in caplog.text
    submit(recorder, "late")  # never raises, even now
    assert "LOST a ledger row submitted after shutdown" in caplog.text
    with pytest.raises(RuntimeError, match="stopped"):
        recorder.start()


async def test_a_busy_process_charges_one_batch_per_interval(
    make_recorder: MakeRecorder, counters: FakeCounters
) -> None:
    recorder = make_recorder(charge_interval_s=0.2)
    submit(recorder, "r1")
    await eventually(lambda: counters.charged == ["r1"], timeout_s=0.1)  # a lone row: at once
    submit(recorder, "r2")
    submit(recorder, "r3")
    await asyncio.sleep(0.05)
    assert counters.charged == ["r1"]  # within the interval: gathering
    submit(recorder, "r4")
    await eventually(lambda: len(counters.charged) == 4, timeout_s=1.0)
    charge_steps = [ids for step, ids in counters.journal if step == "charge"]
    assert charge_steps == [("r1",), ("r2", "r3", "r4")]  # one round trip for the three


async def test_a_full_batch_is_charged_without_waiting_for_the_interval(
    make_recorder: MakeRecorder, counters: FakeCounters
) -> None:
    recorder = make_recorder(charge_interval_s=10.0, batch_size=3)
    submit(recorder, "r1")
    await eventually(lambda: counters.charged == ["r1"], timeout_s=0.1)
    submit(recorder, "r2", "r3", "r4")
    await eventually(lambda: len(counters.charged) == 4, timeout_s=0.5)


async def test_on_charged_hears_of_every_charge_step_failed_or_not(
    make_recorder: MakeRecorder, counters: FakeCounters
) -> None:
    heard: list[list[str]] = []
    recorder = make_recorder(on_charged=lambda batch: heard.append([c.request_id for c in batch]))
    submit(recorder, "r1")
    await eventually(lambda: heard == [["r1"]], timeout_s=0.5)
    counters.fail_charge = StoreUnavailable("redis down")
    submit(recorder, "r2")
    await eventually(lambda: heard == [["r1"], ["r2"]], timeout_s=0.5)
    assert recorder.counter_failures == 1
