"""``Supervisor``: one task per loop, restarted after unexpected errors, stopped cleanly."""

from __future__ import annotations

import asyncio

import pytest

from limits.supervisor import Supervisor
from tests.limits.fakes import eventually


async def test_an_unexpected_error_is_logged_and_the_loop_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # the third run stays up

    supervisor = Supervisor("test-loop", body, restart_delay_s=0.001)
    supervisor.start()
    try:
        await eventually(lambda: len(runs) == 3)
        assert supervisor.restarts == 2
        assert supervisor.running
        assert "background loop test-loop failed" in caplog.text
    finally:
        await supervisor.stop()
    assert not supervisor.running


async def test_a_loop_that_returns_is_started_again() -> None:
    runs: list[int] = []

    async def body() -> None:
        runs.append(1)

    supervisor = Supervisor("returns", body, restart_delay_s=0.001)
    supervisor.start()
    try:
        await eventually(lambda: len(runs) >= 2)
    finally:
        await supervisor.stop()


async def test_start_twice_is_an_error_and_stop_is_idempotent() -> None:
    async def idle() -> None:
        await asyncio.Event().wait()

    supervisor = Supervisor("idle", idle)
    await supervisor.stop()  # never started
    supervisor.start()
    with pytest.raises(RuntimeError, match="already running"):
        supervisor.start()
    await supervisor.stop()
    await supervisor.stop()
    supervisor.start()  # can start again after a stop
    await supervisor.stop()


async def test_cancelling_the_stopper_is_not_swallowed() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # slow to wind down

    supervisor = Supervisor("stubborn", stubborn)
    supervisor.start()
    await started.wait()
    stopper = asyncio.create_task(supervisor.stop())
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await supervisor.stop()  # no-op or waits for the rest of the wind-down
    assert not supervisor.running
