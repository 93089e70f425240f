"""``RedisCounterStore`` beyond the shared contract, against a ``redis-server`` started here.

1. Layout: every key of a user is hash-tagged by the user and expires; one store among replicas
   holds a lease.
2. Faults: a dead Redis fails fast with ``StoreUnavailable`` / ``StoreTimeout`` (never a ``redis``
   exception, never a hang), and a restarted, empty Redis works again at once: the scripts are
   loaded again on NOSCRIPT.

The throwaway server is this module's own, so the shared Redis never sees a SCRIPT FLUSH.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis
import redis.exceptions
from redis.asyncio import Redis

from limits.errors import StoreError, StoreTimeout, StoreUnavailable
from limits.periods import PeriodKind, bounds
from limits.ports import Charge
from limits.store.redis import COUNTER_GRACE_S, PENDING_TTL_S, RedisCounterStore
from limits.store.redis_scripts import CHARGE, LEAD, READ, REBASE, RELEASE, RESERVE
from tests.conftest import FakeClock

FAIL_FAST_S = 2.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
def server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: services are required)")
        pytest.skip(message)
    process = RedisServer()
    process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
async def store(server: RedisServer, clock: FakeClock) -> AsyncIterator[RedisCounterStore]:
    counters = RedisCounterStore.from_url(server.url, clock=clock, socket_timeout_s=0.3)
    yield counters
    await counters.close()


async def _pttl_s(raw: Redis, key: str) -> float:
    return int(await raw.pttl(key)) / 1000


# --- layout -----------------------------------------------------------------------------------


async def test_every_key_of_a_user_is_hash_tagged_and_expires(
    server: RedisServer, store: RedisCounterStore, clock: FakeClock
) -> None:
    period = bounds(PeriodKind.MONTH, clock.now())
    await store.reserve(7, period, "r1", 5, None, 90)
    await store.reserve(7, period, "r2", 5, None, 90)
    await store.charge([Charge("req-1", 7, 3, clock.now(), "r1", period)])
    raw = Redis.from_url(server.url)
    try:
        keys = sorted([key.decode() async for key in raw.scan_iter(match="*")])
        tag = "sp:{u:7}"
        assert keys == [
            f"{tag}:c:day:2026-11-18",
            f"{tag}:c:month:2026-11-01",
            f"{tag}:c:week:2026-11-16",
            f"{tag}:p",
            f"{tag}:r:month:2026-11-01",
            f"{tag}:rx:month:2026-11-01",
        ]
        month_s = (period.end_at - clock.now()).total_seconds() + COUNTER_GRACE_S
        assert await _pttl_s(raw, f"{tag}:c:month:2026-11-01") == pytest.approx(month_s, abs=5)
        assert await _pttl_s(raw, f"{tag}:p") == pytest.approx(PENDING_TTL_S, abs=5)
        assert await _pttl_s(raw, f"{tag}:r:month:2026-11-01") == pytest.approx(90, abs=5)
        assert await _pttl_s(raw, f"{tag}:rx:month:2026-11-01") == pytest.approx(90, abs=5)
    finally:
        await raw.aclose()


async def test_one_store_among_replicas_leads(server: RedisServer, clock: FakeClock) -> None:
    first = RedisCounterStore.from_url(server.url, clock=clock)
    second = RedisCounterStore.from_url(server.url, clock=clock)
    try:
        assert await first.try_lead("refresh", 0.2)
        assert not await second.try_lead("refresh", 0.2)
        assert await first.try_lead("refresh", 0.2)  # the holder renews
        await asyncio.sleep(0.3)
        assert await second.try_lead("refresh", 5)
        assert not await first.try_lead("refresh", 5)
    finally:
        await first.close()
        await second.close()


# --- faults -----------------------------------------------------------------------------------


def _operations(
    store: RedisCounterStore, clock: FakeClock
) -> list[Callable[[], Awaitable[object]]]:
    """One call of every method that talks to Redis (single EVALSHA and pipelines)."""
    period = bounds(PeriodKind.MONTH, clock.now())
    paid = Charge("req-1", 1, 10, clock.now(), "r1", period)
    return [
        store.ping,
        lambda: store.read(1, period),
        lambda: store.reserve(1, period, "r1", 5, 100, 60),
        lambda: store.release(1, period, "r1"),
        lambda: store.charge([paid, Charge("req-2", 2, 5, clock.now())]),
        lambda: store.committed([paid]),
        lambda: store.rebase(1, {period: 0}, 600),
        lambda: store.try_lead("refresh", 5),
    ]


async def _assert_fails_fast(
    call: Callable[[], Awaitable[object]], error: type[StoreError] = StoreUnavailable
) -> None:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await call()
    assert time.monotonic() - started < FAIL_FAST_S
    assert isinstance(caught.value.__cause__, redis.exceptions.RedisError | OSError)


async def test_unreachable_at_start_fails_fast(clock: FakeClock) -> None:
    store = RedisCounterStore.from_url(f"redis://127.0.0.1:{_free_port()}/0", clock=clock)
    try:
        for call in _operations(store, clock):
            await _assert_fails_fast(call)
    finally:
        await store.close()


async def test_a_server_that_never_answers_times_out(clock: FakeClock) -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = RedisCounterStore.from_url(url, clock=clock, socket_timeout_s=0.3)
        try:
            await _assert_fails_fast(store.ping, StoreTimeout)
        finally:
            await store.close()


async def test_killed_mid_use_fails_fast(
    server: RedisServer, store: RedisCounterStore, clock: FakeClock
) -> None:
    for call in _operations(store, clock):
        await call()
    await asyncio.to_thread(server.kill)
    for call in _operations(store, clock):
        await _assert_fails_fast(call)


async def test_restarted_empty_server_works_at_once(
    server: RedisServer, store: RedisCounterStore, clock: FakeClock
) -> None:
    period = bounds(PeriodKind.MONTH, clock.now())
    await store.charge([Charge("req-1", 1, 10, clock.now())])
    assert await store.read(1, period) == (10, 0)
    await asyncio.to_thread(server.kill)
    await asyncio.to_thread(server.start)
    # The pool's connections are dead and the server has no scripts: the first call reconnects
    # (one retry on ConnectionError) and reloads its script (NOSCRIPT).
    assert await store.read(1, period) == (0, 0)
    await store.charge([Charge("req-2", 1, 7, clock.now())])
    assert await store.read(1, period) == (7, 0)
    for call in _operations(store, clock):
        await call()


@pytest.mark.parametrize("first", ["single", "pipeline"])
async def test_scripts_reload_after_script_flush(
    server: RedisServer, store: RedisCounterStore, clock: FakeClock, first: str
) -> None:
    period = bounds(PeriodKind.MONTH, clock.now())
    await store.reserve(1, period, "r1", 5, None, 60)
    raw = Redis.from_url(server.url)
    try:
        await raw.script_flush()
        assert await raw.script_exists(*_shas()) == [False] * 6
    finally:
        await raw.aclose()
    if first == "pipeline":  # a charge (batches: see the next test) reloads CHARGE on NOSCRIPT
        await store.charge([Charge("req-1", 1, 10, clock.now(), "r1", period)])
    else:  # a single call gets NOSCRIPT, loads the script and runs it again
        assert await store.reserve(1, period, "r2", 5, None, 60) == (True, 0, 5)
    for call in _operations(store, clock):
        await call()


async def test_a_batch_of_charges_after_script_flush_counts_each_once(
    server: RedisServer, store: RedisCounterStore, clock: FakeClock
) -> None:
    """A pipeline of charges sends EVALSHA without a SCRIPT EXISTS first (one round trip); on
    NOSCRIPT it loads the script and sends only the charges that did not run."""
    period = bounds(PeriodKind.MONTH, clock.now())
    raw = Redis.from_url(server.url)
    try:
        await raw.script_flush()
        charges = [Charge(f"req-{n}", 1, 10 + n, clock.now()) for n in range(3)]
        await store.charge(charges)
        assert await store.read(1, period) == (33, 0)
        assert await raw.zcard("sp:{u:1}:p") == 3
        await store.charge([Charge("req-3", 1, 5, clock.now()), Charge("req-4", 2, 6, clock.now())])
        assert await store.read(1, period) == (38, 0)
        assert await store.read(2, period) == (6, 0)
    finally:
        await raw.aclose()


def _shas() -> list[str]:
    scripts = [CHARGE, LEAD, READ, REBASE, RELEASE, RESERVE]
    return [hashlib.sha1(script.encode()).hexdigest() for script in scripts]
