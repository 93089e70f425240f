"""How ``RedisCounterStore`` talks to Redis: scripts by SHA, error mapping, and call batching.

Rules
1. No ``redis`` exception leaves ``limits/store``: :func:`map_exceptions` turns timeouts into
   ``StoreTimeout`` and every other ``RedisError`` or ``OSError`` into ``StoreUnavailable``.
2. Scripts are called by SHA (``EVALSHA``) straight through the client, not through redis-py
   ``Script`` objects, whose per-call bookkeeping costs more than the command. On NOSCRIPT (a
   FLUSHALL, SCRIPT FLUSH or a restarted, empty Redis) the script did not run: it is loaded and
   the call sent again, so callers never see it.
3. :class:`ScriptBatcher`: the calls queued in one turn of the event loop go to Redis as ONE
   non-transactional pipeline: one write, one read, one pass through redis-py's per-command
   machinery for all of them. The first call of a batch starts the task that sends it; that
   task runs in the next turn, after every task that was ready in this one had its chance to
   queue its call. Nothing waits for more calls: a lone call costs one loop turn, no timer.
4. Each call stays one EVALSHA, atomic on its own, executed in queueing order; the pipeline is
   not a MULTI, so no call waits for or depends on another. Answers and errors are per call.
   Transport errors (a timeout, a lost connection) fail every call of that batch.
5. A caller cancelled before its batch is sent is left out (its call never runs); once sent, a
   call runs whatever happens to its caller, as a lone EVALSHA would.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from limits.errors import StoreError, StoreTimeout, StoreUnavailable

__all__ = [
    "Call",
    "LuaScript",
    "ScriptBatcher",
    "eval_many",
    "eval_script",
    "map_exceptions",
    "store_error",
]

_Args = Sequence[str | int]


def store_error(exc: BaseException) -> StoreError:
    """A new ``StoreError`` for a driver error (rule 1), caused by it."""
    error: StoreError
    if isinstance(exc, redis.exceptions.TimeoutError | TimeoutError):
        error = StoreTimeout(f"redis did not answer in time: {exc}")
    else:
        error = StoreUnavailable(f"redis is unavailable: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def map_exceptions() -> Iterator[None]:
    """Re-raise driver errors as ``StoreTimeout`` / ``StoreUnavailable`` (httpcore style)."""
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as exc:
        raise store_error(exc) from exc


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script and the SHA1 that EVALSHA names it by."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


async def eval_script(client: Redis, script: LuaScript, keys: Sequence[str], args: _Args) -> Any:
    """One EVALSHA, reloading the script on NOSCRIPT (rule 2). Raises ``redis`` exceptions."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(keys), *keys, *args)


Call = tuple[LuaScript, Sequence[str], _Args]  # a script, its KEYS and its ARGV


async def eval_many(client: Redis, calls: Sequence[Call]) -> list[Any]:
    """Run every call in ONE round trip (an EVALSHA, or a non-transactional pipeline of them).

    Returns each call's answer, or its own ``ResponseError``, in order; NOSCRIPT is handled
    (rule 2). Raises transport errors (``redis`` exceptions, ``OSError``).
    """
    if len(calls) == 1:
        script, keys, args = calls[0]
        try:
            return [await eval_script(client, script, keys, args)]
        except redis.exceptions.ResponseError as exc:  # the call's own error
            return [exc]
    results = await _pipeline(client, calls)
    missing = [i for i, result in enumerate(results) if _noscript(result)]
    if missing:  # those did not run: load their scripts, send them again
        for script in {calls[i][0] for i in missing}:
            await client.script_load(script.source)
        again = await _pipeline(client, [calls[i] for i in missing])
        for i, result in zip(missing, again, strict=True):
            results[i] = result
    return results


async def _pipeline(client: Redis, calls: Sequence[Call]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


def _noscript(result: Any) -> bool:
    return isinstance(result, redis.exceptions.NoScriptError)


@dataclass(slots=True)
class _Waiting:
    call: Call
    future: asyncio.Future[Any]


class ScriptBatcher:
    """Batches EVALSHAs per event-loop turn (rules 3-5)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queue: list[_Waiting] = []
        self._senders: set[asyncio.Task[None]] = set()
        self.batches = self.calls = 0

    async def call(self, script: LuaScript, keys: Sequence[str], args: _Args) -> Any:
        """Run ``script``; returns its answer. Raises ``StoreError``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Waiting((script, keys, args), future))
        if len(self._queue) == 1:
            sender = loop.create_task(self._send())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await future

    async def close(self) -> None:
        """Stop the batches still queued or being sent; their callers get ``StoreUnavailable``."""
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        queued, self._queue = self._queue, []  # a sender cancelled before its first step
        _fail(queued, OSError("the redis client was closed"))

    async def _send(self) -> None:
        waiting = [item for item in self._queue if not item.future.done()]  # rule 5
        self._queue = []
        if not waiting:
            return
        self.batches += 1
        self.calls += len(waiting)
        try:
            results = await eval_many(self._client, [item.call for item in waiting])
        except asyncio.CancelledError as exc:
            _fail(waiting, OSError("the redis client was closed"), exc)
            raise
        except (redis.exceptions.RedisError, OSError) as exc:
            _fail(waiting, exc)
            return
        for item, result in zip(waiting, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, Exception):
                item.future.set_exception(store_error(result))
            else:
                item.future.set_result(result)


def _fail(
    waiting: Sequence[_Waiting], exc: BaseException, context: BaseException | None = None
) -> None:
    """Fail every call still waiting with its own ``StoreError`` for ``exc``."""
    for item in waiting:
        if not item.future.done():
            error = store_error(exc)
            error.__context__ = context
            item.future.set_exception(error)
