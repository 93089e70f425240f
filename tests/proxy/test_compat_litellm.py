"""Compatibility matrix, litellm as a client: ``litellm.completion(model="openai/<model>",
api_base=<proxy>/v1, api_key=<user key>)`` (sync and async, streamed and not) and
``litellm.embedding``, each charged to the exact micro-dollar.

litellm is imported only here (slow: seconds), with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so
that it reads its bundled price map instead of fetching one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

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
from tests.proxy.conftest import Proxy, StartProxy
from tests.proxy.fake_upstream import TEXT, FakeUpstream

pytestmark = [
    pytest.mark.slow,
    # litellm's own types, built lazily by pydantic on its first stream: not this code's warning
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


@pytest.fixture
async def litellm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The litellm module; afterwards its cached clients (and their connections) are closed."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    yield litellm
    for client in list(litellm.in_memory_llm_clients_cache.cache_dict.values()):
        if isinstance(client, openai.OpenAI):
            client.close()
    await close_litellm_async_clients()  # type: ignore[no-untyped-call]
    litellm.in_memory_llm_clients_cache.flush_cache()  # type: ignore[no-untyped-call]


def _options(proxy: Proxy, model: str = "openai/test-model") -> dict[str, Any]:
    return {"model": model, "api_base": proxy.base_url, "api_key": proxy.key}


async def _text(litellm: Any, proxy: Proxy, mode: str, stream: bool) -> str:
    options = {**_options(proxy), "messages": MESSAGES, "stream": stream}
    if mode == "async":
        answer = await litellm.acompletion(**options)
        if not stream:
            return str(answer.choices[0].message.content)
        return "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])

    def call() -> str:
        answer = litellm.completion(**options)
        if not stream:
            return str(answer.choices[0].message.content)
        return "".join(c.choices[0].delta.content or "" for c in answer if c.choices)

    return await asyncio.to_thread(call)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_litellm_completion_is_charged_exactly(
    litellm: Any,
    start_proxy: StartProxy,
    upstream: FakeUpstream,
    price_table: PriceTable,
    mode: str,
    stream: bool,
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    assert await _text(litellm, proxy, mode, stream) == TEXT
    [row] = await proxy.rows()
    usage = openai_usage(upstream)
    assert tokens_of(row) == usage
    assert row["cost_micros"] == expected_micros(price_table, "test-model", usage)
    assert row["cost_micros"] == TEST_MODEL_CALL_MICROS
    assert (row["model"], row["endpoint"], row["estimated"]) == (
        "test-model",
        "/v1/chat/completions",
        0,
    )
    [seen] = upstream.seen
    assert seen.json["model"] == "test-model"  # litellm's "openai/" prefix is its own


async def test_litellm_embedding_is_charged_exactly(
    litellm: Any, start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    result = await litellm.aembedding(**_options(proxy, "openai/embed-test"), input=["hi"])
    assert result.usage.prompt_tokens == 100
    [row] = await proxy.rows()
    assert (row["input_tokens"], row["cost_micros"]) == (100, EMBED_CALL_MICROS)
