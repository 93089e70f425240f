"""What reaches the upstream, and what comes back: unchanged except where SPEC §4 says."""

from __future__ import annotations

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr

from proxy.forwarding import Upstreams, client_headers, upstream_headers
from proxy.routing import Route
from proxy.settings import UpstreamSettings
from tests.proxy.conftest import UPSTREAM_KEY, Proxy, StartProxy

CHAT = "/v1/chat/completions"


async def test_unknown_fields_query_and_headers_reach_the_upstream_unchanged(
    proxy: Proxy,
) -> None:
    raw = (
        b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}],'
        b' "metadata": {"a": "b"}, "store": false, "prompt_cache_key": "k1",'
        b' "thinking": {"type": "enabled", "budget_tokens": 1024}, "future_field": [1, 2.50]}'
    )
    headers = {
        **proxy.auth(),
        "Content-Type": "application/json",
        "openai-beta": "assistants=v2",
        "OpenAI-Organization": "org-1",
        "User-Agent": "agent/1.0",
        "x-custom": "yes",
        "Proxy-Authorization": "Basic secret",
        "TE": "trailers",
        "Connection": "keep-alive, x-hop",
        "x-hop": "per-connection",
    }
    url = CHAT + "?api-version=2024-10-21&q=a%20b"
    async with proxy.client.post(url, data=raw, headers=headers) as response:
        assert response.status == 200
    [seen] = proxy.upstream.seen
    assert seen.body == raw  # byte for byte: nothing re-encoded
    assert seen.path == "/v1/chat/completions"
    assert seen.query_string == "api-version=2024-10-21&q=a%20b"
    for name in ("openai-beta", "OpenAI-Organization", "User-Agent", "x-custom", "Content-Type"):
        assert seen.headers[name] == headers[name]
    for name in ("Proxy-Authorization", "TE", "x-hop"):
        assert name not in seen.headers
    assert seen.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_upstream_response_headers_come_back_minus_hop_by_hop(proxy: Proxy) -> None:
    proxy.upstream.response_headers = {
        "x-request-id": "req_upstream",
        "openai-processing-ms": "12",
        "x-ratelimit-remaining-tokens": "999",
        "Keep-Alive": "timeout=5",
    }
    body = {"model": "test-model", "messages": []}
    async with proxy.client.post(CHAT, json=body, headers=proxy.auth()) as response:
        assert response.headers["x-request-id"] == "req_upstream"
        assert response.headers["openai-processing-ms"] == "12"
        assert response.headers["x-ratelimit-remaining-tokens"] == "999"
        assert "Keep-Alive" not in response.headers
        assert response.headers["x-spend-spent-micros"] == "0"


async def test_rename_changes_only_the_model(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(
        upstreams={"openai": {"models": ["fast"], "rename": {"fast": "test-model"}}}
    )
    body = {"model": "fast", "messages": [], "unknown": {"deep": [1]}}
    async with proxy.client.post(CHAT, json=body, headers=proxy.auth()) as response:
        assert response.status == 200
    assert proxy.upstream.seen[0].json == {**body, "model": "test-model"}
    # priced as the upstream model (no price for "fast"), recorded under the client's name
    rows = await proxy.rows()
    assert [(r["model"], r["cost_micros"]) for r in rows] == [("fast", 190)]


def _route(provider: str, base_url: str) -> Route:
    settings = UpstreamSettings(
        provider=provider,
        base_url=base_url,
        api_key=SecretStr("up-key"),
    )
    return Route("up", settings, "m")


def test_urls_for_openai_and_anthropic_style_base_urls() -> None:
    openai_route = _route("openai", "https://api.openai.com/v1")
    assert str(Upstreams.url(openai_route, "/v1/chat/completions", "")) == (
        "https://api.openai.com/v1/chat/completions"
    )
    azure = _route("openai", "https://x.example/openai/v1/")
    assert str(Upstreams.url(azure, "/v1/responses", "api-version=1&x=%2F")) == (
        "https://x.example/openai/v1/responses?api-version=1&x=%2F"
    )
    anthropic = _route("anthropic", "https://api.anthropic.com")
    assert str(Upstreams.url(anthropic, "/v1/messages", "beta=true")) == (
        "https://api.anthropic.com/v1/messages?beta=true"
    )


def test_anthropic_upstream_gets_x_api_key_and_client_credentials_are_dropped() -> None:
    incoming = CIMultiDictProxy(
        CIMultiDict(
            {
                "x-api-key": "sk-sp-user",
                "Authorization": "Bearer sk-sp-user",
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "prompt-caching-2024-07-31",
                "Host": "proxy.local",
                "Content-Length": "12",
                "Accept-Encoding": "br",
            }
        )
    )
    out = upstream_headers(incoming, _route("anthropic", "https://a").settings)
    assert dict(out) == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31",
        "x-api-key": "up-key",
        "Content-Type": "application/json",
    }


def test_client_headers_drop_framing_and_encoding() -> None:
    incoming = CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Type": "application/json",
                "Content-Length": "10",
                "Content-Encoding": "gzip",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
                "Set-Cookie": "a=b",
                "x-request-id": "r1",
            }
        )
    )
    assert dict(client_headers(incoming)) == {
        "Content-Type": "application/json",
        "Set-Cookie": "a=b",
        "x-request-id": "r1",
    }


async def test_gzip_answers_are_decoded_for_the_client(proxy: Proxy) -> None:
    body = {"model": "test-model", "messages": []}
    headers = {**proxy.auth(), "Accept-Encoding": "gzip"}
    async with proxy.client.post(CHAT, data=orjson.dumps(body), headers=headers) as response:
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        assert (await response.json())["usage"]["prompt_tokens"] == 100
