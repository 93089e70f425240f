"""Compatibility matrix, Anthropic SDK (``anthropic.Anthropic(base_url=<proxy origin>,
api_key=<user key>)``): ``/v1/messages`` sync and async, streamed and not, charged to the exact
micro-dollar with cache writes and reads at their prices; ``?beta=true`` and the
``anthropic-*`` headers reach the upstream; ``count_tokens`` is never charged; the models list
is in Anthropic's shape; the spend-limit 429 is not retried."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock

from limits import PriceTable
from tests.proxy.compat import (
    ANTHROPIC_KEY,
    CLAUDE_CALL_MICROS,
    anthropic_usage,
    compat_price_table,
    expected_micros,
    origin,
    start_compat,
    tokens_of,
)
from tests.proxy.conftest import Proxy, StartProxy
from tests.proxy.fake_upstream import TEXT, FakeUpstream

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
MODEL = "claude-test"


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


def _text(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


def _sync_call(client: anthropic.Anthropic, stream: bool) -> Message:
    if not stream:
        return client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as events:
        assert "".join(events.text_stream) == TEXT
        return events.get_final_message()


async def _async_call(client: anthropic.AsyncAnthropic, stream: bool) -> Message:
    if not stream:
        return await client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as events:
        assert "".join([text async for text in events.text_stream]) == TEXT
        return await events.get_final_message()


async def _message(proxy: Proxy, mode: str, stream: bool) -> Message:
    if mode == "sync":

        def call() -> Message:
            with anthropic.Anthropic(base_url=origin(proxy), api_key=proxy.key) as client:
                return _sync_call(client, stream)

        return await asyncio.to_thread(call)
    async with anthropic.AsyncAnthropic(base_url=origin(proxy), api_key=proxy.key) as client:
        return await _async_call(client, stream)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_anthropic_sdk_message_is_charged_exactly(
    start_proxy: StartProxy,
    upstream: FakeUpstream,
    price_table: PriceTable,
    mode: str,
    stream: bool,
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    message = await _message(proxy, mode, stream)
    assert _text(message) == TEXT
    assert (message.usage.input_tokens, message.usage.output_tokens) == (100, 50)
    [row] = await proxy.rows()
    usage = anthropic_usage(upstream)
    assert tokens_of(row) == usage  # 100 input, 30 cache-write, 20 cache-read, 50 output
    assert row["cost_micros"] == expected_micros(price_table, MODEL, usage) == CLAUDE_CALL_MICROS
    assert (row["endpoint"], row["model"], row["upstream"], row["estimated"]) == (
        "/v1/messages",
        MODEL,
        "anthropic",
        0,
    )
    assert await proxy.spent() == CLAUDE_CALL_MICROS
    [seen] = upstream.seen
    assert (seen.path, seen.query_string) == ("/v1/messages", "")
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert "Authorization" not in seen.headers
    sdk_version = anthropic.Anthropic(api_key="-").default_headers["anthropic-version"]
    assert seen.headers["anthropic-version"] == sdk_version  # passed through


async def test_bearer_auth_beta_query_and_headers_reach_the_upstream(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    async with anthropic.AsyncAnthropic(base_url=origin(proxy), auth_token=proxy.key) as client:
        answer = await client.beta.messages.create(
            model=MODEL,
            max_tokens=256,
            messages=MESSAGES,
            betas=["prompt-caching-2024-07-31"],
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}},
            extra_query={"beta": "true"},  # as Claude Code sends it
        )
    assert answer.usage.cache_creation_input_tokens == 30
    [seen] = upstream.seen
    assert (seen.path, seen.query_string) == ("/v1/messages", "beta=true")
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert "Authorization" not in seen.headers
    assert seen.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert await proxy.ledger() == (CLAUDE_CALL_MICROS, 1)


@pytest.mark.parametrize("start_input_tokens", [None, 60])
async def test_newer_message_delta_usage_is_merged_not_added(
    start_proxy: StartProxy, upstream: FakeUpstream, start_input_tokens: int | None
) -> None:
    """message_delta carrying input and cache counts too (newer API versions): per field the
    latest non-null count wins, so nothing is counted twice."""
    proxy = await start_compat(start_proxy, upstream)
    upstream.delta_usage = "full"
    upstream.start_input_tokens = start_input_tokens  # message_delta says 100 in the end
    async with anthropic.AsyncAnthropic(base_url=origin(proxy), api_key=proxy.key) as client:
        events = await client.messages.create(
            model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
        )
        kinds = [event.type async for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    [row] = await proxy.rows()
    assert tokens_of(row) == anthropic_usage(upstream)
    assert (row["cost_micros"], row["estimated"]) == (CLAUDE_CALL_MICROS, 0)


async def test_count_tokens_is_forwarded_and_never_charged(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    async with anthropic.AsyncAnthropic(base_url=origin(proxy), api_key=proxy.key) as client:
        for model in (MODEL, "claude-without-price"):  # no price needed to count
            counted = await client.messages.count_tokens(model=model, messages=MESSAGES)
            assert counted.input_tokens == 100
        raw = await client.messages.with_raw_response.count_tokens(model=MODEL, messages=MESSAGES)
    assert raw.headers["x-spend-spent-micros"] == "0"
    assert [seen.path for seen in upstream.seen] == ["/v1/messages/count_tokens"] * 3
    assert upstream.seen[0].headers["x-api-key"] == ANTHROPIC_KEY
    assert await proxy.ledger() == (0, 0)
    assert await proxy.spent() == 0


async def test_models_list_in_anthropic_shape_for_anthropic_clients(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(
        start_proxy, upstream, upstreams={"anthropic": {"models": ["claude-test", "claude-*"]}}
    )
    async with anthropic.AsyncAnthropic(base_url=origin(proxy), api_key=proxy.key) as client:
        listed = [model async for model in client.models.list()]
        one = await client.models.retrieve("claude-anything")  # routed by the glob
        with pytest.raises(anthropic.NotFoundError):
            await client.models.retrieve("gpt-4o-mini")  # an OpenAI-format model
    assert [(model.id, model.type, model.display_name) for model in listed] == [
        ("claude-test", "model", "claude-test")
    ]
    assert one.id == "claude-anything"
    assert upstream.seen == []


async def test_spend_limit_429_in_anthropic_shape_is_not_retried(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    await proxy.set_limit(1_000)
    async with anthropic.AsyncAnthropic(base_url=origin(proxy), api_key=proxy.key) as client:
        await client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
        await proxy.drain()
        assert client.max_retries == 2
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    error = caught.value
    assert error.body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Spend limit reached: $0.001169 spent of $0.001 this month; "
            "the limit resets at 2026-12-01T00:00:00Z.",
        },
    }
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-spend-limit-micros"] == "1000"
    assert sum(1 for path, _ in proxy.statuses if path == "/v1/messages") == 2  # no retry
    assert len(upstream.seen) == 1
    assert await proxy.ledger() == (CLAUDE_CALL_MICROS, 1)
