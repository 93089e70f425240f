"""The counters' Redis fails: at start, during traffic, and comes back empty (SPEC §8, §4).

Each test runs its own ``redis-server`` (``redis_server``), never the shared one. The ledger is
the embedded SQLite file, so it stays up while Redis is down.

- ``on_store_error = "allow"``: calls succeed, each admission is flagged (a warning naming the
  store error), and the charges still reach the ledger.
- ``on_store_error = "deny"``: 503 ``service_unavailable`` and nothing is forwarded.
- Redis restarted empty: the refresher rebuilds every counter from the ledger within one
  refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.integration.services import RedisServer, free_port
from tests.proxy.conftest import Proxy, StartProxy

CHAT = "/v1/chat/completions"
BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
CALL_MICROS = 190  # tests/proxy/test_handlers.py: one test-model call of the fake upstream
REFRESH_S = 0.3


async def _on_redis(start_proxy: StartProxy, url: str, on_store_error: str) -> Proxy:
    return await start_proxy(
        storage={"redis_url": url, "refresh_interval_s": REFRESH_S},
        enforcement={"on_store_error": on_store_error},
    )


async def _calls(proxy: Proxy, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
            await response.read()
            statuses.append(response.status)
    return statuses


def _fail_open_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("store error" in record.getMessage() for record in caplog.records)


async def test_redis_unreachable_at_start_allow_serves_and_records(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    proxy = await _on_redis(start_proxy, f"redis://127.0.0.1:{free_port()}/0", "allow")
    assert await _calls(proxy, 3) == [200, 200, 200]
    assert _fail_open_warnings(caplog) == 3
    rows = await proxy.rows()
    assert [row["cost_micros"] for row in rows] == [CALL_MICROS] * 3


async def test_redis_lost_during_traffic_allow_keeps_charging_the_ledger(
    start_proxy: StartProxy, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    proxy = await _on_redis(start_proxy, redis_server.url, "allow")
    assert await _calls(proxy, 2) == [200, 200]
    assert _fail_open_warnings(caplog) == 0
    redis_server.stop()
    assert await _calls(proxy, 3) == [200, 200, 200]
    assert _fail_open_warnings(caplog) == 3
    assert len(await proxy.rows()) == 5


async def test_redis_lost_deny_answers_503_and_forwards_nothing(
    start_proxy: StartProxy, redis_server: RedisServer
) -> None:
    proxy = await _on_redis(start_proxy, redis_server.url, "deny")
    assert await _calls(proxy, 1) == [200]
    redis_server.stop()
    # Outlive the check-mode read cache ([enforcement] spent_cache_s, 0.05 s by default, on the
    # monotonic clock): a read it still holds is a legitimate answer, not a store failure.
    await asyncio.sleep(0.2)
    forwarded = len(proxy.upstream.seen)
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 503
        error = (await response.json())["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "service_unavailable")
    assert len(proxy.upstream.seen) == forwarded
    assert len(await proxy.rows()) == 1


async def test_redis_unreachable_at_start_deny_answers_503(start_proxy: StartProxy) -> None:
    proxy = await _on_redis(start_proxy, f"redis://127.0.0.1:{free_port()}/0", "deny")
    assert await _calls(proxy, 2) == [503, 503]
    assert proxy.upstream.seen == []
    assert await proxy.rows() == []


async def test_redis_restarted_empty_counters_are_rebuilt_by_the_refresher(
    start_proxy: StartProxy, redis_server: RedisServer
) -> None:
    proxy = await _on_redis(start_proxy, redis_server.url, "allow")
    assert await _calls(proxy, 4) == [200] * 4
    assert await proxy.spent() == 4 * CALL_MICROS
    redis_server.stop()
    redis_server.start()  # same port, no data
    # The refresher runs on the wall clock; the fake clock only decides the period.
    deadline = time.monotonic() + 10 * REFRESH_S + 5
    spent = -1
    while time.monotonic() < deadline:
        spent = await proxy.spent()
        if spent == 4 * CALL_MICROS:
            break
        await asyncio.sleep(REFRESH_S / 3)
    assert spent == 4 * CALL_MICROS
