"""Upstream faults: 5xx, timeouts, resets, malformed JSON, broken SSE, slow and huge answers,
and clients that leave mid-call. The proxy never answers 500 from its own code and never
charges a call without usage, except a stream that relayed bytes (estimated, SPEC §4).

Decisions recorded here:
- malformed or non-object JSON from the upstream is relayed unchanged (status and body) and
  not charged: it has no usage the proxy can read.
- a 20 MB non-streaming answer is read whole into memory (``Upstreams.read``) and relayed; the
  memory held per call is bounded by the answer's size, not by anything the proxy sets.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.faults.raw_upstream import RawUpstream
from tests.proxy.conftest import Proxy, StartProxy
from tests.proxy.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
STREAM = BODY | {"stream": True}


async def _raw_proxy(start_proxy: StartProxy, raw: RawUpstream, **over: object) -> Proxy:
    upstream = {"openai": {"base_url": raw.url} | dict(over)}
    return await start_proxy(upstreams=upstream)


@pytest.mark.parametrize("status", [500, 502, 503, 529])
async def test_upstream_5xx_is_passed_through_and_not_charged(proxy: Proxy, status: int) -> None:
    proxy.upstream.status = status
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == status
        assert (await response.json()) == proxy.upstream.error_body
    assert await proxy.rows() == []
    assert await proxy.spent() == 0


async def test_upstream_timeout_is_504_not_charged_no_reservation_left(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(
        upstreams={"openai": {"timeout_s": 0.3}}, enforcement={"mode": "reserve"}
    )
    proxy.upstream.hang = True
    started = time.monotonic()
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 504
        assert (await response.json())["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5
    proxy.upstream.released.set()
    assert await proxy.rows() == []
    async with proxy.client.get("/v1/usage", headers=proxy.auth()) as response:
        status = await response.json()
    assert status["spent_micros"] == 0
    # A leaked reservation would hold back spend: with a 1-micro headroom the next call passes.
    await proxy.set_limit(1)
    proxy.upstream.hang = False
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 200


async def test_connection_reset_is_502_not_charged(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = "reset"
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 502
        assert (await response.json())["error"]["type"] == "upstream_error"
    assert await proxy.rows() == []


@pytest.mark.parametrize("mode", ["malformed_json", "non_object_json"])
async def test_malformed_json_is_relayed_and_not_charged(
    start_proxy: StartProxy, raw_upstream: RawUpstream, mode: str
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = mode
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 200
        body = await response.read()
    assert b'"usage"' in body  # relayed unchanged
    assert await proxy.rows() == []


async def test_garbage_sse_is_relayed_and_charged_an_estimate(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = "garbage_sse"
    async with proxy.client.post(CHAT, json=STREAM, headers=proxy.auth()) as response:
        assert response.status == 200
        body = await response.read()
    assert b"not sse at all" in body
    rows = await proxy.rows()
    assert [row["estimated"] for row in rows] == [1]


async def test_truncated_sse_is_relayed_then_cut_and_charged_an_estimate(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = "truncated_sse"
    received = b""
    async with proxy.client.post(CHAT, json=STREAM, headers=proxy.auth()) as response:
        assert response.status == 200
        try:
            async for chunk in response.content.iter_any():
                received += chunk
        except aiohttp.ClientPayloadError:
            pass  # the proxy closes the client's connection: a truncated stream, not a clean end
    assert b"Hello" in received
    assert b"[DONE]" not in received
    rows = await proxy.rows()
    assert len(rows) == 1
    assert rows[0]["estimated"] == 1
    assert rows[0]["cost_micros"] > 0


async def test_slow_stream_relays_the_first_chunk_before_the_upstream_finishes(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = "slow_sse"
    raw_upstream.slow_gap_s = 1.0
    async with proxy.client.post(CHAT, json=STREAM, headers=proxy.auth()) as response:
        first = await asyncio.wait_for(response.content.readany(), timeout=5)
        assert b"first" in first
        assert not raw_upstream.finished.is_set()  # the upstream is still in its pause
        rest = await response.read()
    assert b"second" in rest
    assert b'"choices":[]' not in rest  # the usage-only chunk the client did not ask for
    rows = await proxy.rows()
    assert [(row["estimated"], row["input_tokens"]) for row in rows] == [(0, 100)]


async def test_twenty_megabyte_answer_is_relayed_and_charged(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = "large"
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 200
        body = await response.read()
    assert len(body) > raw_upstream.large_bytes
    rows = await proxy.rows()
    assert [(row["estimated"], row["input_tokens"]) for row in rows] == [(0, 100)]


async def test_client_gone_before_the_answer_charges_nothing_and_closes_upstream(
    start_proxy: StartProxy, raw_upstream: RawUpstream
) -> None:
    proxy = await _raw_proxy(start_proxy, raw_upstream)
    raw_upstream.mode = "hang"
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.5):
            await proxy.client.post(CHAT, json=BODY, headers=proxy.auth())
    await _until(lambda: raw_upstream.cancelled == 1)
    assert await proxy.rows() == []


async def test_client_gone_mid_stream_gives_one_estimated_row_and_closes_upstream(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    upstream.chunk_delay_s = 0.3
    response = await proxy.client.post(CHAT, json=STREAM, headers=proxy.auth())
    assert response.status == 200
    await asyncio.wait_for(response.content.readany(), timeout=5)
    response.close()  # the client leaves with the stream half relayed
    await _until_rows(proxy, 1)
    rows = await proxy.rows()
    assert [row["estimated"] for row in rows] == [1]
    await asyncio.sleep(0.5)
    assert upstream.streams_finished == 0  # the upstream was cut, it did not run to its end


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _until_rows(proxy: Proxy, count: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(await proxy.rows()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} ledger rows"
        await asyncio.sleep(0.05)
