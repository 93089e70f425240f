"""Chat completions through the proxy with the official OpenAI SDK: spend, headers, 429."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from limits import PeriodKind, Usage, bounds, cost_micros
from limits.pricing import PriceTable
from tests.proxy.conftest import UPSTREAM_KEY, Proxy, StartProxy
from tests.proxy.fake_upstream import FakeUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
# The fake reports 100 prompt tokens (20 cached), 50 completion tokens (10 of them reasoning):
# test-model costs 80 * 1 + 20 * 0.5 + 50 * 2 micro-dollars.
TEST_MODEL_CALL_MICROS = 190


def _expected(prices: PriceTable, model: str, upstream: FakeUpstream) -> int:
    usage = Usage(
        input_tokens=upstream.prompt_tokens - upstream.cached_tokens,
        output_tokens=upstream.completion_tokens,
        cache_read_tokens=upstream.cached_tokens,
    )
    price = prices.find(model)
    assert price is not None
    return cost_micros(usage, price)


async def test_spend_is_exact_after_sync_async_and_streamed_calls(
    proxy: Proxy, price_table: PriceTable
) -> None:
    assert _expected(price_table, "test-model", proxy.upstream) == TEST_MODEL_CALL_MICROS
    mini = _expected(price_table, "gpt-4o-mini", proxy.upstream)
    assert mini == 44  # 80 * 0.15 + 20 * 0.075 + 50 * 0.6 = 43.5, rounded up once

    def sync_call() -> str | None:
        with openai.OpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
            answer = client.chat.completions.create(model="test-model", messages=MESSAGES)
            return answer.choices[0].message.content

    assert await asyncio.to_thread(sync_call) == "Hello there, friend!"
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert answer.usage is not None
        assert answer.usage.prompt_tokens == 100
        stream = await client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello there, friend!"
    expected = 2 * TEST_MODEL_CALL_MICROS + mini
    assert await proxy.spent() == expected
    assert await proxy.ledger() == (expected, 3)
    rows = await proxy.rows()
    assert sorted((r["model"], r["cost_micros"], r["estimated"]) for r in rows) == [
        ("gpt-4o-mini", 44, 0),
        ("test-model", 190, 0),
        ("test-model", 190, 0),
    ]
    tokens = ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens")
    assert {tuple(r[name] for name in tokens) for r in rows} == {(80, 20, 50, 10)}
    assert {r["endpoint"] for r in rows} == {"/v1/chat/completions"}
    assert {r["upstream"] for r in rows} == {"openai"}


async def test_spend_headers_on_every_proxied_answer(proxy: Proxy) -> None:
    body = {"model": "test-model", "messages": MESSAGES}
    async with proxy.client.post("/v1/chat/completions", json=body, headers=proxy.auth()) as r:
        assert r.status == 200
        assert "x-spend-limit-micros" not in r.headers  # unlimited
        assert r.headers["x-spend-spent-micros"] == "0"
        assert r.headers["x-spend-resets-at"] == "2026-12-01T00:00:00Z"
    await proxy.set_limit(5_000)
    await proxy.drain()
    async with proxy.client.post("/v1/chat/completions", json=body, headers=proxy.auth()) as r:
        assert r.headers["x-spend-limit-micros"] == "5000"
        assert r.headers["x-spend-spent-micros"] == "190"  # before this call
        second_id = r.headers["x-spend-request-id"]
    assert second_id in {row["request_id"] for row in await proxy.rows()}


async def test_client_request_id_is_kept_and_made_unique(proxy: Proxy) -> None:
    body = {"model": "test-model", "messages": MESSAGES}
    headers = {**proxy.auth(), "x-request-id": "req-42"}
    for _ in range(2):
        async with proxy.client.post("/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200
    headers["x-request-id"] = "bad id with spaces"
    async with proxy.client.post("/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200
    ids = sorted(row["request_id"] for row in await proxy.rows())
    assert len(set(ids)) == 3
    assert [i.startswith("req-42-") for i in ids].count(True) == 2
    fresh = next(i for i in ids if not i.startswith("req-42-"))
    assert len(fresh) == 32
    assert " " not in fresh
    assert [seen.headers["x-request-id"] for seen in proxy.upstream.seen[:2]] == ["req-42"] * 2


async def test_spend_limit_429_is_explained_and_not_retried_by_the_sdk(proxy: Proxy) -> None:
    await proxy.set_limit(100)
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        await client.chat.completions.create(model="test-model", messages=MESSAGES)
        await proxy.drain()
        assert client.max_retries == 2
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="test-model", messages=MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "spend_limit_exceeded"
    assert error.type == "insufficient_quota"
    assert isinstance(error.body, dict)
    assert error.body["message"] == (
        "Spend limit reached: $0.00019 spent of $0.0001 this month; "
        "the limit resets at 2026-12-01T00:00:00Z."
    )
    headers = error.response.headers
    reset_at = bounds(PeriodKind.MONTH, proxy.clock.now()).end_at
    assert headers["retry-after"] == str(int((reset_at - proxy.clock.now()).total_seconds()))
    assert headers["x-should-retry"] == "false"
    assert headers["x-spend-limit-micros"] == "100"
    assert proxy.chat_posts() == 2  # no retry of the 429
    assert len(proxy.upstream.seen) == 1  # the denied call never went upstream
    assert await proxy.ledger() == (190, 1)


async def test_zero_limit_blocks_everything(proxy: Proxy) -> None:
    await proxy.set_limit(0)
    body = {"model": "test-model", "messages": MESSAGES}
    async with proxy.client.post("/v1/chat/completions", json=body, headers=proxy.auth()) as r:
        assert r.status == 429
        assert (await r.json())["error"]["code"] == "spend_limit_exceeded"
    assert proxy.upstream.seen == []


async def test_upstream_sees_the_configured_key_never_the_users(proxy: Proxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        await client.chat.completions.create(model="test-model", messages=MESSAGES)
    headers = proxy.upstream.seen[0].headers
    assert headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-api-key" not in headers
    assert all(proxy.key not in value for value in headers.values())


async def test_x_api_key_authenticates_too(proxy: Proxy) -> None:
    body = {"model": "test-model", "messages": MESSAGES}
    headers = {"x-api-key": proxy.key}
    async with proxy.client.post("/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200
    seen = proxy.upstream.seen[0].headers
    assert "x-api-key" not in seen
    assert seen["Authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_usage_and_models_endpoints(proxy: Proxy) -> None:
    async with proxy.client.get("/v1/usage", headers=proxy.auth()) as r:
        status = await r.json()
    assert status == {
        "user": "alice",
        "enabled": False,
        "limit_micros": None,
        "source": None,
        "source_group": None,
        "period": "month",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "spent_micros": 0,
        "remaining_micros": None,
    }
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        models = [model.id async for model in client.models.list()]
    assert models == ["test-model", "gpt-4o-mini", "no-price-model", "text-embedding-3-small"]


async def test_embeddings_are_charged_by_prompt_tokens(
    proxy: Proxy, price_table: PriceTable
) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        result = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert result.usage.prompt_tokens == 100
    price = price_table.find("text-embedding-3-small")
    assert price is not None
    expected = cost_micros(Usage(input_tokens=100), price)
    assert await proxy.ledger() == (expected, 1)


async def test_reserve_mode_releases_on_upstream_errors_and_settles_on_success(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(enforcement={"mode": "reserve"})
    await proxy.set_limit(1_000)  # below one call's reservation (up to 32768 output tokens)
    body = {"model": "test-model", "messages": MESSAGES}
    proxy.upstream.status = 500
    async with proxy.client.post("/v1/chat/completions", json=body, headers=proxy.auth()) as r:
        assert r.status == 500
    proxy.upstream.status = 200
    for _ in range(2):  # had the failed call's reservation leaked, these would be refused
        async with proxy.client.post("/v1/chat/completions", json=body, headers=proxy.auth()) as r:
            assert r.status == 200
        await proxy.drain()
    assert await proxy.ledger() == (380, 2)


async def test_responses_api_json_and_stream_are_charged_from_their_usage(proxy: Proxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        answer = await client.responses.create(model="test-model", input="hi")
        assert answer.usage is not None
        assert answer.usage.input_tokens == 100
        stream = await client.responses.create(model="test-model", input="hi", stream=True)
        kinds = [event.type async for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 5
    assert "stream_options" not in proxy.upstream.seen[1].json  # chat-only option
    rows = await proxy.rows()
    assert sorted((r["endpoint"], r["cost_micros"], r["estimated"]) for r in rows) == [
        ("/v1/responses", 190, 0),
        ("/v1/responses", 190, 0),
    ]
