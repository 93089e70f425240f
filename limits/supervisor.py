"""Supervised background loops: run one loop in one task, log and restart it when it breaks.

Used by the ledger recorder, the counter refresher and the cached directory's poller.

Rules
1. One :class:`Supervisor` owns at most one ``asyncio.Task``. ``start`` creates it (a running
   event loop is required); ``stop`` cancels it and awaits it, so no task outlives its owner and
   none is left pending at loop shutdown (the tests run with warnings as errors).
2. Expected failures (``StoreError``) are handled inside the loops themselves. An exception that
   reaches the supervisor is unexpected (a bug, an OS error): it is logged with its traceback and
   the loop is started again after ``restart_delay_s``, so one bad row or one bug never silently
   ends background work for the life of the process. This is one of the two places allowed to
   ``except Exception`` (STYLE §4). Messages name the loop, never data (no keys, no rows).
3. ``asyncio.CancelledError`` is not an ``Exception``: cancelling the task always ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)


class Supervisor:
    """Runs ``body`` forever in one task, restarting it after unexpected exceptions."""

    def __init__(
        self,
        name: str,
        body: Callable[[], Coroutine[Any, Any, None]],
        restart_delay_s: float = 1.0,
    ) -> None:
        self.name = name
        self._body = body
        self._restart_delay_s = restart_delay_s
        self._task: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (also while restarting)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in a new task. Raises ``RuntimeError`` if it is already running."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait until its task has finished. Idempotent."""
        task = self._task
        if task is None:
            return
        # Cancellations of the caller that predate this call (aiohttp cancels its main task and
        # then runs the app's cleanup inside it) are not "being cancelled" here: compare counts.
        current = asyncio.current_task()
        cancelling_before = current.cancelling() if current is not None else 0
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Re-raise only if *we* are being cancelled, not because we cancelled the loop.
            if current is not None and current.cancelling() > cancelling_before:
                raise
        finally:
            if task.done():
                self._task = None  # else a later stop() waits for it again

    async def _supervise(self) -> None:
        while True:
            try:
                await self._body()
            except Exception:  # the task supervisor: rule 2
                self.restarts += 1
                logger.exception(
                    "background loop %s failed; restarting in %.1f s",
                    self.name,
                    self._restart_delay_s,
                )
            await asyncio.sleep(self._restart_delay_s)
