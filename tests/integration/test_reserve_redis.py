"""Enforcement mode ``reserve`` on the real Redis (SPEC §2): the overspend bound, and no leaked
reservation whatever way a call ends.

1. 64 concurrent calls for one user at the edge of the limit: in ``reserve`` mode the total
   charged exceeds the limit by at most one call's cost; in ``check`` mode it exceeds it by many
   (the figure is recorded as a test property and stated in the README).
2. A soak of ``SPEND_PROXY_RESERVE_SOAK_CALLS`` calls (default 10,000; 64 at a time) mixing
   successes, streams, upstream 500s without usage, connection resets, read timeouts, clients
   that give up mid-request and mid-stream: afterwards no reservation is left in Redis (read
   directly; the clock is frozen, so none can have expired) and, after the recorder drained and
   one refresh, every counter equals the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer

from limits import PeriodKind, bounds
from tests.integration.chaos_upstream import Act, ChaosUpstream
from tests.integration.reserve_harness import ReserveRig, reserve_rig

pytestmark = [pytest.mark.redis]

PATH = "/v1/chat/completions"
EDGE_CONTENT = "x" * 400  # 100 prompt tokens reported; the estimate counts 101 (role "user")
EDGE_MAX_TOKENS = 100
EDGE_CALL_MICROS = 100 * 1 + EDGE_MAX_TOKENS * 2  # what the upstream's usage costs: 300
EDGE_CONCURRENCY = 64
SOAK_CALLS = int(os.environ.get("SPEND_PROXY_RESERVE_SOAK_CALLS", "10000"))
SOAK_CONCURRENCY = 64
# Per 20 calls. SLOW: the client gives up once the upstream has the call; SLOW_STREAM: the
# client closes the stream after its first chunk. HANG replaces one call in 1000.
SOAK_MIX = (
    (Act.OK,) * 8
    + (Act.STREAM,) * 3
    + (Act.ERROR,) * 2
    + (Act.RESET,) * 2
    + (Act.SLOW_STREAM,) * 3
    + (Act.SLOW,) * 2
)
EXPECTED_STATUS = {Act.OK: 200, Act.STREAM: 200, Act.ERROR: 500, Act.RESET: 502, Act.HANG: 504}


@pytest.fixture
async def chaos(aiohttp_server: AiohttpServer) -> ChaosUpstream:
    fake = ChaosUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    return fake


def _body(content: str, max_tokens: int, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "test-model",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return body


async def _edge_call(rig: ReserveRig) -> int:
    body = _body(EDGE_CONTENT, EDGE_MAX_TOKENS)
    async with rig.client.post(PATH, json=body, headers=rig.auth(Act.SLOW)) as response:
        await response.read()
        return response.status


@pytest.mark.parametrize("mode", ["check", "reserve"])
async def test_concurrent_calls_at_the_edge_of_the_limit(
    mode: str,
    chaos: ChaosUpstream,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    limit_micros = 10 * EDGE_CALL_MICROS + EDGE_CALL_MICROS // 2
    chaos.delay_s = 0.05  # every call is admitted before the first one is charged
    async with reserve_rig(
        tmp_path=tmp_path,
        redis_url=redis_url,
        prefix=key_prefix,
        upstream_url=chaos.url,
        mode=mode,
        limit_micros=limit_micros,
    ) as rig:
        statuses = await asyncio.gather(*(_edge_call(rig) for _ in range(EDGE_CONCURRENCY)))
        await rig.settled()
        charged = await rig.ledger_micros()
        assert await rig.raw_reservations() == (0, 0)
    overspend = charged - limit_micros
    record_property("overspend_micros", overspend)
    print(f"{mode}: {statuses.count(200)} admitted, overspend {overspend} micros")
    record_property("overspend_calls", overspend / EDGE_CALL_MICROS)
    assert set(statuses) <= {200, 429}
    assert charged == statuses.count(200) * EDGE_CALL_MICROS
    if mode == "reserve":
        assert 0 <= overspend <= EDGE_CALL_MICROS
        assert statuses.count(200) == 11  # 301 micros reserved each: 10 * 301 < 3150 <= 11 * 301
    else:
        # Every call reads spent = 0 before the first charge lands: all 64 go through.
        assert overspend >= 40 * EDGE_CALL_MICROS


async def _give_up_mid_request(
    rig: ReserveRig, chaos: ChaosUpstream, body: dict[str, Any], call_id: str
) -> None:
    """The client drops the connection once the upstream has the call (before it answers)."""

    async def post() -> None:
        async with rig.client.post(PATH, json=body, headers=rig.auth(Act.SLOW, call_id)) as r:
            await r.read()

    task = asyncio.create_task(post())
    arrived = asyncio.create_task(chaos.arrival(call_id).wait())
    try:
        await asyncio.wait({task, arrived}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        arrived.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        chaos.arrivals.pop(call_id, None)


async def _soak_call(rig: ReserveRig, chaos: ChaosUpstream, number: int) -> int | None:
    """One call of the soak; returns the status the client saw, None if it gave up."""
    act = Act.HANG if number % 1000 == 500 else SOAK_MIX[number % len(SOAK_MIX)]
    content = "y" * (4 * (number % 50 + 1))
    body = _body(content, 16 + number % 32, stream=act in (Act.STREAM, Act.SLOW_STREAM))
    call_id = f"soak-{number}"
    if act is Act.SLOW:
        await _give_up_mid_request(rig, chaos, body, call_id)
        return None
    async with rig.client.post(PATH, json=body, headers=rig.auth(act, call_id)) as response:
        if act is Act.SLOW_STREAM:
            assert response.status == 200
            await response.content.readany()
            response.close()  # the client goes away mid-stream
            return None
        await response.read()
        assert response.status == EXPECTED_STATUS[act], await response.text()
        return response.status


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_soak_leaves_no_reservation_and_counters_equal_the_ledger(
    chaos: ChaosUpstream,
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    chaos.hang_s = 4.0
    started = time.perf_counter()
    async with reserve_rig(
        tmp_path=tmp_path,
        redis_url=redis_url,
        prefix=key_prefix,
        upstream_url=chaos.url,
        mode="reserve",
        limit_micros=10**12,  # limited (so every call reserves), never reached
        timeout_s=2.0,  # generous: client, proxy and upstream share one event loop
    ) as rig:
        numbers = iter(range(SOAK_CALLS))
        statuses: Counter[int | None] = Counter()

        async def worker() -> None:
            for number in numbers:
                statuses[await _soak_call(rig, chaos, number)] += 1

        await asyncio.gather(*(worker() for _ in range(SOAK_CONCURRENCY)))
        await rig.settled()

        await rig.refresh()
        elapsed_s = time.perf_counter() - started

        assert await rig.raw_reservations() == (0, 0)
        for kind in PeriodKind:
            period = bounds(kind, rig.clock.now())
            ledger = await rig.ledger_micros(kind)
            assert await rig.counters.read(rig.user_id, period) == (ledger, 0)
        assert ledger > 0
    record_property("soak_calls", SOAK_CALLS)
    record_property("soak_seconds", round(elapsed_s, 1))
    record_property("statuses", dict(statuses))
    print(f"soak: {SOAK_CALLS} calls in {elapsed_s:.1f} s; statuses {dict(statuses)}")
    assert sum(statuses.values()) == SOAK_CALLS
    assert set(chaos.calls) == set(Act)
