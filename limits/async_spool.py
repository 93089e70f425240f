"""``AsyncSpool``: cancel-safe async access to a synchronous ``Spool`` (for the ledger recorder).

A ``Spool`` (``limits.ports``; ``FileSpool`` in ``limits/store/spool.py``) is synchronous and
``fsync``s. The recorder needs it from the event loop, and its writer task may be cancelled at
any await (shutdown). Without care, a cancelled append could be on disk while its rows are still
in memory, and be spooled a second time.

Rules
1. Each operation runs in a worker thread, so ``fsync`` never stalls the event loop.
2. Operations run one at a time, in call order (an ``asyncio.Lock``): a replay's ``read`` ...
   ``clear`` never interleaves with another caller's operation that already holds the lock.
3. Each operation, together with its ``then`` callback (the caller's bookkeeping, run on the
   event loop right after the I/O succeeded), runs in its own task shielded from cancellation.
   A cancelled caller therefore never sees "written but not accounted for": the callback still
   runs. :meth:`settle` waits for every operation still in flight (``stop`` calls it).
4. Errors (``OSError``) reach the caller; if the caller is gone they are logged, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from limits.ports import LedgerEntry, Spool

__all__ = ["AsyncSpool"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class AsyncSpool:
    """Wraps a ``Spool``; see the module docstring for the rules."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._lock = asyncio.Lock()
        self._in_flight: set[asyncio.Task[object]] = set()

    def __len__(self) -> int:
        return len(self._spool)

    async def append(self, entries: Sequence[LedgerEntry], then: Callable[[], None]) -> None:
        """Append durably, then call ``then()`` (also if the caller was cancelled meanwhile)."""
        await self._run(lambda: self._spool.append(entries), lambda _: then())

    async def read(self) -> list[LedgerEntry]:
        return await self._run(self._spool.read, None)

    async def clear(self) -> None:
        await self._run(self._spool.clear, None)

    def append_blocking(self, entries: Sequence[LedgerEntry]) -> None:
        """Append on the calling thread, blocking: only at shutdown, when nothing is in flight."""
        self._spool.append(entries)

    async def settle(self) -> None:
        """Wait until no operation is in flight (rule 3). Never raises ``OSError``."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _run(self, work: Callable[[], _T], then: Callable[[_T], None] | None) -> _T:
        async def operation() -> _T:
            async with self._lock:
                result = await asyncio.to_thread(work)
                if then is not None:
                    then(result)
                return result

        task = asyncio.ensure_future(operation())
        self._in_flight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Also reported to the caller if it still waits; logged here in case it does not.
            logger.warning("spool operation failed: %r", exc)
