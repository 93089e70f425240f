"""``limits.store.redis_calls``: scripts by SHA and the per-turn ``ScriptBatcher``.

Run over fakeredis (which runs Lua) so that SCRIPT FLUSH never touches the shared Redis; the
store-level behaviour over the real server is in test_counters.py and test_redis_faults.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.exceptions
from redis.asyncio import Redis

from limits.errors import StoreTimeout, StoreUnavailable
from limits.store.redis_calls import (
    LuaScript,
    ScriptBatcher,
    eval_many,
    eval_script,
    map_exceptions,
)

# KEYS[1] a counter; ARGV[1] an increment; returns the new value
INCR = LuaScript.of("return redis.call('INCRBY', KEYS[1], ARGV[1])")
# KEYS[1] a key; returns the length of its string value (WRONGTYPE on anything else)
STRLEN = LuaScript.of("return redis.call('STRLEN', KEYS[1])")


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield fake
    await fake.aclose()


async def test_calls_made_in_one_turn_go_in_one_pipeline_in_order(client: Redis) -> None:
    batcher = ScriptBatcher(client)
    answers = await asyncio.gather(*(batcher.call(INCR, ["n"], [step]) for step in (1, 10, 100)))
    assert answers == [1, 11, 111]  # each call atomic, executed in queueing order
    assert (batcher.batches, batcher.calls) == (1, 3)


async def test_a_lone_call_is_sent_at_once(client: Redis) -> None:
    batcher = ScriptBatcher(client)
    assert await batcher.call(INCR, ["n"], [5]) == 5
    assert await batcher.call(INCR, ["n"], [5]) == 10
    assert batcher.batches == 2


async def test_one_calls_error_is_its_own(client: Redis) -> None:
    await client.hset("a-hash", "f", "v")
    batcher = ScriptBatcher(client)
    results = await asyncio.gather(
        batcher.call(INCR, ["n"], [1]),
        batcher.call(STRLEN, ["a-hash"], []),  # WRONGTYPE
        batcher.call(INCR, ["n"], [1]),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert results[2] == 2
    assert isinstance(results[1], StoreUnavailable)
    assert isinstance(results[1].__cause__, redis.exceptions.ResponseError)


async def test_a_caller_cancelled_before_sending_is_left_out(client: Redis) -> None:
    batcher = ScriptBatcher(client)
    kept = asyncio.ensure_future(batcher.call(INCR, ["n"], [1]))
    dropped = asyncio.ensure_future(batcher.call(INCR, ["n"], [1000]))
    await asyncio.sleep(0)  # both queued, the batch not sent yet
    dropped.cancel()
    assert await kept == 1
    assert await client.get("n") == b"1"  # the cancelled call never ran
    assert batcher.calls == 1


async def test_noscript_in_a_batch_loads_the_script_and_runs_each_call_once(
    client: Redis,
) -> None:
    batcher = ScriptBatcher(client)
    await batcher.call(INCR, ["n"], [1])
    await client.script_flush()
    answers = await asyncio.gather(*(batcher.call(INCR, ["n"], [1]) for _ in range(4)))
    assert answers == [2, 3, 4, 5]
    await client.script_flush()
    assert await batcher.call(INCR, ["n"], [1]) == 6  # a lone call too


async def test_eval_many_reloads_only_what_did_not_run(client: Redis) -> None:
    await client.script_flush()
    results = await eval_many(client, [(INCR, ["a"], [1]), (INCR, ["b"], [2])])
    assert results == [1, 2]
    assert await eval_script(client, INCR, ["a"], [1]) == 2


async def test_transport_errors_fail_every_call_of_the_batch() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    client = Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    batcher = ScriptBatcher(client)
    try:
        results = await asyncio.gather(
            *(batcher.call(INCR, ["n"], [1]) for _ in range(3)), return_exceptions=True
        )
    finally:
        await client.aclose()
    for result in results:
        assert isinstance(result, StoreUnavailable)
        assert isinstance(result.__cause__, redis.exceptions.ConnectionError)
    assert len({id(result) for result in results}) == 3  # each caller its own exception


async def test_close_fails_the_calls_still_being_sent() -> None:
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = Redis(port=silent.getsockname()[1], socket_timeout=5)
        batcher = ScriptBatcher(client)
        waiting = asyncio.ensure_future(batcher.call(INCR, ["n"], [1]))
        await asyncio.sleep(0.05)
        await batcher.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await waiting
        await client.aclose()


def test_map_exceptions_names_timeouts_apart() -> None:
    with pytest.raises(StoreTimeout), map_exceptions():
        raise redis.exceptions.TimeoutError("slow")
    with pytest.raises(StoreUnavailable), map_exceptions():
        raise ConnectionRefusedError("refused")


async def test_close_fails_the_calls_not_sent_yet(client: Redis) -> None:
    batcher = ScriptBatcher(client)
    waiting = asyncio.ensure_future(batcher.call(INCR, ["n"], [1]))
    await asyncio.sleep(0)  # queued; its sender has not run
    await batcher.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await waiting
    assert await client.get("n") is None
