"""Every error on ``/v1/messages`` (and ``/v1/messages/count_tokens``) in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}``: its status, its body, nothing forwarded
and nothing charged (SPEC §4 error table)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from limits import PriceTable
from tests.proxy.compat import (
    anthropic_upstream,
    compat_price_table,
    start_compat,
)
from tests.proxy.conftest import Proxy, StartProxy, start_with_flaky_directory, unused_port_url
from tests.proxy.fake_upstream import FakeUpstream

MESSAGES = "/v1/messages"
BODY: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


@pytest.fixture
async def proxy(start_proxy: StartProxy, upstream: FakeUpstream) -> Proxy:
    return await start_compat(start_proxy, upstream)


async def _post(
    proxy: Proxy,
    body: bytes | dict[str, Any] = BODY,
    headers: dict[str, str] | None = None,
    path: str = MESSAGES,
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"x-api-key": proxy.key} if headers is None else headers
    async with proxy.client.post(path, data=data, headers=headers) as response:
        return response.status, await response.json()


def _error_type(body: Any) -> str:
    """The Anthropic error type, after checking the whole shape."""
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["message"]
    kind: str = body["error"]["type"]
    return kind


async def _nothing_forwarded_or_charged(proxy: Proxy) -> None:
    assert proxy.upstream.seen == []
    await _nothing_charged(proxy)


async def _nothing_charged(proxy: Proxy) -> None:
    assert await proxy.ledger() == (0, 0)
    assert await proxy.spent() == 0


@pytest.mark.parametrize("path", [MESSAGES, MESSAGES + "/count_tokens"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "sk-sp-unknown"}, {"Authorization": "Bearer sk-sp-" + "x" * 43}],
)
async def test_401_authentication_error(proxy: Proxy, headers: dict[str, str], path: str) -> None:
    status, body = await _post(proxy, headers=headers, path=path)
    assert (status, _error_type(body)) == (401, "authentication_error")
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b""])
async def test_400_invalid_json(proxy: Proxy, raw: bytes) -> None:
    status, body = await _post(proxy, raw)
    assert (status, _error_type(body)) == (400, "invalid_request_error")
    assert "JSON" in body["error"]["message"]
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("body", [{}, {"model": ""}, {"model": 3}])
async def test_400_missing_model(proxy: Proxy, body: dict[str, Any]) -> None:
    status, answer = await _post(proxy, body)
    assert (status, _error_type(answer)) == (400, "invalid_request_error")
    assert "'model'" in answer["error"]["message"]
    await _nothing_forwarded_or_charged(proxy)


async def test_400_model_not_priced_names_the_config_key(proxy: Proxy) -> None:
    status, body = await _post(proxy, {**BODY, "model": "claude-without-price"})
    assert (status, _error_type(body)) == (400, "invalid_request_error")
    assert '[prices."claude-without-price"]' in body["error"]["message"]
    await _nothing_forwarded_or_charged(proxy)


async def test_404_unknown_model(proxy: Proxy) -> None:
    status, body = await _post(proxy, {**BODY, "model": "llama-3"})
    assert (status, _error_type(body)) == (404, "not_found_error")
    assert body["error"]["message"] == "The model 'llama-3' is not served by this proxy."
    await _nothing_forwarded_or_charged(proxy)


async def test_404_for_an_openai_model_names_the_paths_that_serve_it(proxy: Proxy) -> None:
    status, body = await _post(proxy, {**BODY, "model": "gpt-4o-mini"})
    assert (status, _error_type(body)) == (404, "not_found_error")
    assert body["error"]["message"] == (
        "The model 'gpt-4o-mini' is served by the upstream 'openai' (provider 'openai'), which "
        "/v1/messages does not reach: the proxy does not translate between API formats. Call it "
        "on the OpenAI-format paths (/v1/chat/completions, /v1/responses, ...)."
    )
    await _nothing_forwarded_or_charged(proxy)


async def test_413_request_too_large(start_proxy: StartProxy, upstream: FakeUpstream) -> None:
    proxy = await start_compat(start_proxy, upstream, max_body_bytes=500)
    status, body = await _post(proxy, {**BODY, "system": "x" * 1000})
    assert (status, _error_type(body)) == (413, "request_too_large")
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("path", [MESSAGES, MESSAGES + "/count_tokens"])
async def test_429_spend_limit(proxy: Proxy, path: str) -> None:
    await proxy.set_limit(0)
    async with proxy.client.post(path, json=BODY, headers={"x-api-key": proxy.key}) as r:
        assert r.status == 429
        assert r.headers["x-should-retry"] == "false"
        assert int(r.headers["Retry-After"]) > 0
        assert _error_type(await r.json()) == "rate_limit_error"
    await _nothing_forwarded_or_charged(proxy)


async def test_502_upstream_unreachable(start_proxy: StartProxy, upstream: FakeUpstream) -> None:
    down = unused_port_url().removesuffix("/v1")
    proxy = await start_compat(start_proxy, upstream, upstreams={"anthropic": {"base_url": down}})
    status, body = await _post(proxy)
    assert (status, _error_type(body)) == (502, "api_error")
    assert "'anthropic' could not be reached" in body["error"]["message"]
    await _nothing_forwarded_or_charged(proxy)


async def test_504_upstream_timeout(start_proxy: StartProxy, upstream: FakeUpstream) -> None:
    timeout = anthropic_upstream(upstream, timeout_s=0.2)
    proxy = await start_compat(start_proxy, upstream, upstreams={"anthropic": timeout})
    upstream.hang = True
    status, body = await _post(proxy)
    assert (status, _error_type(body)) == (504, "timeout_error")
    assert len(upstream.seen) == 1  # it was sent, and is not charged
    await _nothing_charged(proxy)


async def test_503_key_store_unavailable_and_500_for_a_bug(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, flaky = await start_with_flaky_directory(start_proxy)
    flaky.down = True
    status, body = await _post(proxy, {**BODY, "model": "test-model"})
    assert (status, _error_type(body)) == (503, "overloaded_error")
    flaky.down, flaky.broken = False, True
    with caplog.at_level(logging.ERROR):
        status, body = await _post(proxy, {**BODY, "model": "test-model"})
    assert (status, _error_type(body)) == (500, "api_error")
    assert proxy.key not in caplog.text
    flaky.broken = False
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [400, 429, 500, 529])
async def test_upstream_errors_pass_through_unchanged_and_uncharged(
    proxy: Proxy, status: int, stream: bool
) -> None:
    proxy.upstream.status = status
    proxy.upstream.error_body = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": f"upstream says {status}"},
    }
    answer = await _post(proxy, {**BODY, "stream": stream})
    assert answer == (status, proxy.upstream.error_body)
    assert len(proxy.upstream.seen) == 1
    await _nothing_charged(proxy)


async def test_unknown_paths_under_messages_answer_404_in_anthropic_shape(proxy: Proxy) -> None:
    status, body = await _post(proxy, path=MESSAGES + "/batches")
    assert (status, _error_type(body)) == (404, "not_found_error")
    async with proxy.client.get(MESSAGES, headers={"x-api-key": proxy.key}) as response:
        assert response.status == 405
        assert _error_type(await response.json()) == "api_error"
    await _nothing_forwarded_or_charged(proxy)
