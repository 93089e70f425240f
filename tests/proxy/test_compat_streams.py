"""Streams that end without (complete) usage, for chat, the Responses API and Anthropic messages:
a client that goes away, an upstream that cuts the stream, an upstream that sends no usage.

Each leaves exactly one ledger row marked ``estimated``, and a client that goes away makes the
proxy close the upstream stream (seen from the fake upstream: its next write fails and it
never finishes). An Anthropic stream that reported ``message_start`` keeps its exact input and
cache counts; only its output is estimated (``proxy/estimate.py``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from limits import PriceTable, Usage
from tests.proxy.compat import (
    compat_price_table,
    expected_micros,
    start_compat,
    tokens_of,
    until,
)
from tests.proxy.conftest import Proxy, StartProxy
from tests.proxy.fake_upstream import FakeUpstream

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "test-model", "messages": [{"role": "user", "content": "Say hello"}]},
    ),
    "responses": ("/v1/responses", {"model": "test-model", "input": "Say hello"}),
    "messages": (
        "/v1/messages",
        {
            "model": "claude-test",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Say hello"}],
        },
    ),
}


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


async def _one_row(proxy: Proxy) -> dict[str, Any]:
    for _ in range(200):
        if (await proxy.ledger())[1]:
            break
    [row] = await proxy.rows()
    return row


async def _stream(proxy: Proxy, api: str) -> bytes:
    path, body = CALLS[api]
    headers = {**proxy.auth(), **ANTHROPIC_HEADERS}
    async with proxy.client.post(path, json={**body, "stream": True}, headers=headers) as r:
        assert r.status == 200
        return await r.read()


@pytest.mark.parametrize("api", list(CALLS))
async def test_client_disconnect_closes_the_upstream_and_leaves_one_estimated_row(
    start_proxy: StartProxy, upstream: FakeUpstream, price_table: PriceTable, api: str
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    upstream.chunk_delay_s = 0.05
    path, body = CALLS[api]
    headers = {**proxy.auth(), **ANTHROPIC_HEADERS}
    async with proxy.client.post(path, json={**body, "stream": True}, headers=headers) as r:
        assert r.status == 200
        assert await r.content.readuntil(b"\n\n")  # the first event, then hang up
        r.close()
    await until(lambda: upstream.streams_aborted == 1)
    row = await _one_row(proxy)
    assert row["estimated"] == 1
    assert row["endpoint"] == path
    assert row["cost_micros"] == expected_micros(price_table, body["model"], tokens_of(row))
    if api == "messages":  # message_start went by: input and cache counts are exact
        seen = tokens_of(row)
        assert (seen.input_tokens, seen.cache_write_tokens, seen.cache_read_tokens) == (100, 30, 20)
        assert 1 <= seen.output_tokens <= 5
    else:
        assert row["input_tokens"] == (4 if api == "chat" else 3)  # request text / 4
        assert row["output_tokens"] <= 5
    assert upstream.streams_finished == 0
    assert len(await proxy.rows()) == 1  # exactly one row, also after the upstream gave up


async def test_anthropic_stream_cut_after_message_start_keeps_its_input_counts(
    start_proxy: StartProxy, upstream: FakeUpstream, price_table: PriceTable
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    upstream.cut_after_chunks = 5  # message_start, block start, ping, "Hello", " there"
    with pytest.raises(aiohttp.ClientPayloadError):
        await _stream(proxy, "messages")
    [row] = await proxy.rows()
    # exact input and cache counts; output max(1 reported, 11 relayed characters / 4 -> 3)
    assert tokens_of(row) == Usage(
        input_tokens=100, cache_write_tokens=30, cache_read_tokens=20, output_tokens=3
    )
    assert row["estimated"] == 1
    assert row["cost_micros"] == 464  # 300 + 112.5 + 6 + 45, rounded up once


async def test_responses_stream_cut_counts_only_the_relayed_deltas(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    upstream.cut_after_chunks = 6  # created, in_progress, item, part, "Hello", " there"
    with pytest.raises(aiohttp.ClientPayloadError):
        await _stream(proxy, "responses")
    [row] = await proxy.rows()
    # "Say hello" -> 3 input tokens; "Hello there" -> 3 output tokens (the echoed request in
    # response.created is not output)
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (3, 3, 1)
    assert row["cost_micros"] == 3 * 1 + 3 * 2


@pytest.mark.parametrize(
    ("api", "usage", "micros"),
    [
        # "user" + "Say hello" -> 4; "Hello there, friend!" -> 5: 4 * 3 + 5 * 15
        ("messages", Usage(input_tokens=4, output_tokens=5), 87),
        # "Say hello" -> 3; 5 deltas, 20 characters -> 5: 3 * 1 + 5 * 2
        ("responses", Usage(input_tokens=3, output_tokens=5), 13),
        ("chat", Usage(input_tokens=4, output_tokens=5), 14),
    ],
)
async def test_a_complete_stream_without_usage_is_charged_an_estimate(
    start_proxy: StartProxy, upstream: FakeUpstream, api: str, usage: Usage, micros: int
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    upstream.omit_usage = True
    assert await _stream(proxy, api)
    [row] = await proxy.rows()
    assert tokens_of(row) == usage
    assert (row["cost_micros"], row["estimated"]) == (micros, 1)
    assert upstream.streams_finished == 1
