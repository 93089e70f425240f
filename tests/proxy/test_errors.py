"""The error table of SPEC §4: status, body shape, and that nothing went upstream or was charged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.proxy.conftest import Proxy, StartProxy, start_with_flaky_directory, unused_port_url

CHAT = "/v1/chat/completions"
BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}


async def _post(
    proxy: Proxy, body: bytes | dict[str, Any] = BODY, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = proxy.auth() if headers is None else headers
    async with proxy.client.post(CHAT, data=data, headers=headers) as response:
        return response.status, await response.json()


def _openai_error(type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"type": type, "code": code, "param": param}


async def _nothing_forwarded_or_charged(proxy: Proxy) -> None:
    assert proxy.upstream.seen == []
    assert await proxy.ledger() == (0, 0)
    assert await proxy.spent() == 0


def _shape(body: Any) -> dict[str, Any]:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return {key: error[key] for key in ("type", "code", "param")}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-sp-" + "x" * 43},
        {"x-api-key": "sk-sp-unknown"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
)
async def test_401_missing_or_unknown_key(proxy: Proxy, headers: dict[str, str]) -> None:
    status, body = await _post(proxy, headers=headers)
    assert status == 401
    assert _shape(body) == _openai_error("invalid_request_error", "invalid_api_key")
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"", b"{"])
async def test_400_invalid_json(proxy: Proxy, raw: bytes) -> None:
    status, body = await _post(proxy, raw)
    assert status == 400
    assert _shape(body) == _openai_error("invalid_request_error", "invalid_json")
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("body", [{}, {"model": ""}, {"model": 5}, {"model": None}])
async def test_400_missing_model(proxy: Proxy, body: dict[str, Any]) -> None:
    status, answer = await _post(proxy, body)
    assert status == 400
    assert _shape(answer) == _openai_error("invalid_request_error", "missing_model", "model")
    await _nothing_forwarded_or_charged(proxy)


async def test_400_model_not_priced_names_the_config_key(proxy: Proxy) -> None:
    status, body = await _post(proxy, {**BODY, "model": "no-price-model"})
    assert status == 400
    assert _shape(body) == _openai_error("invalid_request_error", "model_not_priced", "model")
    assert '[prices."no-price-model"]' in body["error"]["message"]
    await _nothing_forwarded_or_charged(proxy)


async def test_unpriced_models_allow_charges_zero(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(unpriced_models="allow")
    status, _ = await _post(proxy, {**BODY, "model": "no-price-model"})
    assert status == 200
    assert await proxy.ledger() == (0, 1)
    assert "no-price-model" in caplog.text


async def test_404_model_not_found(proxy: Proxy) -> None:
    status, body = await _post(proxy, {**BODY, "model": "claude-3-opus"})
    assert status == 404
    assert _shape(body) == _openai_error("invalid_request_error", "model_not_found", "model")
    await _nothing_forwarded_or_charged(proxy)


async def test_413_by_content_length_and_by_bytes_read(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(max_body_bytes=1000)
    big = orjson.dumps({**BODY, "padding": "x" * 2000})
    status, body = await _post(proxy, big)
    assert status == 413
    assert _shape(body) == _openai_error("invalid_request_error", "request_too_large")

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 100):
            yield big[start : start + 100]

    async with proxy.client.post(CHAT, data=chunked(), headers=proxy.auth()) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "request_too_large"
    await _nothing_forwarded_or_charged(proxy)


async def test_502_upstream_unreachable(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(upstreams={"openai": {"base_url": unused_port_url()}})
    status, body = await _post(proxy)
    assert status == 502
    assert _shape(body) == _openai_error("upstream_error", "upstream_unreachable")
    assert await proxy.ledger() == (0, 0)


async def test_504_upstream_timeout(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(upstreams={"openai": {"timeout_s": 0.2}})
    proxy.upstream.hang = True
    status, body = await _post(proxy)
    assert status == 504
    assert _shape(body) == _openai_error("upstream_error", "upstream_timeout")
    assert len(proxy.upstream.seen) == 1  # it was sent, and is not charged
    assert await proxy.ledger() == (0, 0)


async def test_503_when_the_key_store_is_unavailable(start_proxy: StartProxy) -> None:
    proxy, flaky = await start_with_flaky_directory(start_proxy)
    flaky.down = True
    status, body = await _post(proxy)
    assert status == 503
    assert _shape(body) == _openai_error("service_unavailable", "service_unavailable")
    flaky.down = False
    await _nothing_forwarded_or_charged(proxy)


async def test_500_for_a_bug_is_logged_without_secrets(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, flaky = await start_with_flaky_directory(start_proxy)
    flaky.broken = True
    with caplog.at_level(logging.ERROR):
        status, body = await _post(proxy)
    assert status == 500
    assert _shape(body) == _openai_error("server_error", "internal_error")
    assert "unhandled error on POST /v1/chat/completions" in caplog.text
    assert proxy.key not in caplog.text
    flaky.broken = False
    await _nothing_forwarded_or_charged(proxy)


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_upstream_http_errors_pass_through_uncharged(proxy: Proxy, status: int) -> None:
    proxy.upstream.status = status
    proxy.upstream.error_body = {"error": {"message": f"upstream says {status}", "x": [1]}}
    answer_status, body = await _post(proxy)
    assert (answer_status, body) == (status, proxy.upstream.error_body)
    assert len(proxy.upstream.seen) == 1
    assert await proxy.ledger() == (0, 0)


async def test_unknown_paths_and_methods_answer_in_openai_shape(proxy: Proxy) -> None:
    async with proxy.client.get("/v1/nope", headers=proxy.auth()) as response:
        assert response.status == 404
        assert await response.json() == {
            "error": {
                "message": "Invalid URL (GET /v1/nope)",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    async with proxy.client.get("/nope") as response:
        assert response.status == 404
        assert _shape(await response.json())["type"] == "invalid_request_error"
    async with proxy.client.get(CHAT, headers=proxy.auth()) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert _shape(await response.json())["type"] == "invalid_request_error"


async def test_anthropic_paths_get_anthropic_error_shape(proxy: Proxy) -> None:
    async with proxy.client.post("/v1/messages?beta=true", data=b"{}") as response:
        assert response.status == 401
        body = await response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]
