"""Compatibility matrix, OpenAI SDK: chat completions, legacy completions and the Responses API
(sync and async client, streamed and not) and embeddings, each charged to the exact
micro-dollar, cached input at the cache-read price and reasoning tokens never added twice."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from limits import PriceTable
from tests.proxy.compat import (
    EMBED_CALL_MICROS,
    TEST_MODEL_CALL_MICROS,
    compat_price_table,
    expected_micros,
    openai_usage,
    start_compat,
    tokens_of,
)
from tests.proxy.conftest import UPSTREAM_KEY, Proxy, StartProxy
from tests.proxy.fake_upstream import TEXT, FakeUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "responses": "/v1/responses",
}


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


@pytest.fixture
async def proxy_openai(start_proxy: StartProxy, upstream: FakeUpstream) -> Proxy:
    return await start_compat(start_proxy, upstream)


def _sync_text(client: openai.OpenAI, api: str, stream: bool) -> str:
    """One call with the sync client; the text it answered."""
    model = "test-model"
    if api == "chat" and not stream:
        answer = client.chat.completions.create(model=model, messages=MESSAGES)
        return answer.choices[0].message.content or ""
    if api == "chat":
        with client.chat.completions.create(model=model, messages=MESSAGES, stream=True) as chunks:
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if api == "completions" and not stream:
        return client.completions.create(model=model, prompt="Say hello").choices[0].text
    if api == "completions":
        with client.completions.create(model=model, prompt="Say hello", stream=True) as pieces:
            return "".join(c.choices[0].text for c in pieces if c.choices)
    if not stream:
        return client.responses.create(model=model, input="Say hello").output_text
    with client.responses.create(model=model, input="Say hello", stream=True) as events:
        return "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))


async def _async_text(client: openai.AsyncOpenAI, api: str, stream: bool) -> str:
    """One call with the async client; the text it answered."""
    model = "test-model"
    if api == "chat" and not stream:
        answer = await client.chat.completions.create(model=model, messages=MESSAGES)
        return answer.choices[0].message.content or ""
    if api == "chat":
        chunks = await client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    if api == "completions" and not stream:
        return (await client.completions.create(model=model, prompt="Say hello")).choices[0].text
    if api == "completions":
        pieces = await client.completions.create(model=model, prompt="Say hello", stream=True)
        return "".join([c.choices[0].text async for c in pieces if c.choices])
    if not stream:
        return (await client.responses.create(model=model, input="Say hello")).output_text
    events = await client.responses.create(model=model, input="Say hello", stream=True)
    return "".join([e.delta async for e in events if isinstance(e, ResponseTextDeltaEvent)])


async def _text(proxy: Proxy, api: str, mode: str, stream: bool) -> str:
    if mode == "sync":

        def call() -> str:
            with openai.OpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
                return _sync_text(client, api, stream)

        return await asyncio.to_thread(call)
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        return await _async_text(client, api, stream)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("api", list(PATHS))
async def test_openai_sdk_call_is_charged_exactly(
    start_proxy: StartProxy,
    upstream: FakeUpstream,
    price_table: PriceTable,
    api: str,
    mode: str,
    stream: bool,
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    assert await _text(proxy, api, mode, stream) == TEXT
    [row] = await proxy.rows()
    usage = openai_usage(upstream)
    assert tokens_of(row) == usage  # 80 input + 20 cache-read, 50 output of which 10 reasoning
    assert row["cost_micros"] == expected_micros(price_table, "test-model", usage)
    assert row["cost_micros"] == TEST_MODEL_CALL_MICROS
    assert (row["endpoint"], row["model"], row["upstream"], row["estimated"]) == (
        PATHS[api],
        "test-model",
        "openai",
        0,
    )
    assert await proxy.spent() == TEST_MODEL_CALL_MICROS
    [seen] = upstream.seen
    assert seen.path == PATHS[api]
    assert seen.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    if stream and api != "responses":  # the proxy asked for the usage chunk it needs
        assert seen.json["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_openai_sdk_embeddings_are_charged_exactly(
    start_proxy: StartProxy, upstream: FakeUpstream, price_table: PriceTable, mode: str
) -> None:
    proxy = await start_compat(start_proxy, upstream)

    def call() -> int:
        with openai.OpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
            return client.embeddings.create(model="embed-test", input="hi").usage.prompt_tokens

    if mode == "sync":
        assert await asyncio.to_thread(call) == 100
    else:
        async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
            result = await client.embeddings.create(model="embed-test", input="hi")
        assert result.usage.prompt_tokens == 100
    [row] = await proxy.rows()
    assert (row["input_tokens"], row["output_tokens"], row["endpoint"]) == (
        100,
        0,
        "/v1/embeddings",
    )
    assert row["cost_micros"] == expected_micros(price_table, "embed-test", tokens_of(row))
    assert row["cost_micros"] == EMBED_CALL_MICROS


async def test_streamed_responses_are_priced_by_the_model_the_upstream_reports(
    start_proxy: StartProxy, upstream: FakeUpstream, price_table: PriceTable
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    upstream.reported_model = "test-model"  # named in the response.* events only
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        events = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        done = [e async for e in events if isinstance(e, ResponseCompletedEvent)]
    assert done[0].response.model == "test-model"
    [row] = await proxy.rows()
    usage = openai_usage(upstream)
    assert expected_micros(price_table, "gpt-4o-mini", usage) == 44  # had it been priced so
    # SPEC §3: an override for the reported model comes first
    assert (row["model"], row["cost_micros"]) == ("gpt-4o-mini", TEST_MODEL_CALL_MICROS)


async def test_responses_reasoning_and_cache_are_never_counted_twice(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    upstream.prompt_tokens, upstream.cached_tokens = 1000, 1000  # all input cached
    upstream.completion_tokens, upstream.reasoning_tokens = 300, 300  # all output reasoning
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        await client.responses.create(model="test-model", input="hi")
        stream = await client.responses.create(model="test-model", input="hi", stream=True)
        _ = [event async for event in stream]
    rows = await proxy.rows()
    # 1000 * 0.5 + 300 * 2 each: no input at the full price, no reasoning on top of output
    assert [(r["input_tokens"], r["cache_read_tokens"], r["cost_micros"]) for r in rows] == [
        (0, 1000, 1100),
        (0, 1000, 1100),
    ]


async def test_the_responses_websocket_transport_is_refused_so_clients_fall_back(
    proxy_openai: Proxy,
) -> None:
    """Codex CLI tries ``GET /v1/responses`` with ``Upgrade: websocket`` first: 426 sends it to
    HTTP at once. A plain GET is 405, as on every POST-only path."""
    upgrade = {**proxy_openai.auth(), "Connection": "Upgrade", "Upgrade": "websocket"}
    upgrade |= {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with proxy_openai.client.get("/v1/responses", headers=upgrade) as response:
        assert response.status == 426
        assert response.headers["Upgrade"] == "HTTP/1.1"
        error = (await response.json())["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "websocket_not_supported")
    async with proxy_openai.client.get("/v1/responses", headers=proxy_openai.auth()) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    async with proxy_openai.client.get(
        "/v1/responses", headers=upgrade | {"Authorization": ""}
    ) as r:
        assert r.status == 401  # keys are checked first, as everywhere under /v1/
    assert proxy_openai.upstream.seen == []
