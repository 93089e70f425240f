"""``AsyncSpool``: off-loop, serialised, and cancel-safe spool operations."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from limits.async_spool import AsyncSpool
from limits.ports import LedgerEntry
from limits.store.spool import FileSpool
from tests.limits.fakes import make_row


class SlowSpool(FileSpool):
    """Appends wait for ``release`` (set from the test), on the worker thread."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.threads: set[int] = set()

    def append(self, entries: Sequence[LedgerEntry]) -> None:
        self.threads.add(threading.get_ident())
        assert self.release.wait(timeout=5)
        super().append(entries)


async def test_a_cancelled_append_still_runs_its_bookkeeping(tmp_path: Path) -> None:
    slow = SlowSpool(tmp_path / "spool.jsonl")
    spool = AsyncSpool(slow)
    done: list[str] = []
    caller = asyncio.create_task(spool.append([make_row("a")[0]], then=lambda: done.append("a")))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    slow.release.set()
    await spool.settle()
    assert done == ["a"]
    assert len(spool) == 1
    assert threading.get_ident() not in slow.threads  # the I/O ran on a worker thread


async def test_operations_run_one_at_a_time_in_call_order(tmp_path: Path) -> None:
    slow = SlowSpool(tmp_path / "spool.jsonl")
    spool = AsyncSpool(slow)
    order: list[str] = []
    append = asyncio.create_task(spool.append([make_row("a")[0]], then=lambda: order.append("a")))
    await asyncio.sleep(0.01)
    read = asyncio.create_task(spool.read())
    await asyncio.sleep(0.01)
    assert not read.done()  # waits for the append
    slow.release.set()
    await append
    assert [e.request_id for e in await read] == ["a"]
    await spool.clear()
    assert len(spool) == 0
    spool.append_blocking([make_row("b")[0]])
    assert order == ["a"]
    assert len(spool) == 1


async def test_errors_reach_the_caller_and_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.jsonl"
    spool = AsyncSpool(FileSpool(path))
    path.mkdir()
    with pytest.raises(OSError):  # noqa: PT011 - any OSError: the OS picks which one
        await spool.append([make_row("a")[0]], then=lambda: None)
    await spool.settle()
    assert "spool operation failed" in caplog.text
