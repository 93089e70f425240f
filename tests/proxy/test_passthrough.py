"""``passthrough_paths``: configured extra paths are authenticated, limit-checked, forwarded to
the upstream of the body's model (else the first upstream) and charged when the answer carries
usage; every other path stays 404, and the proxy is never an open proxy."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from limits import ConfigError, PriceTable, Usage
from proxy.app import create_app
from tests.proxy.compat import (
    OPENAI_MODELS,
    compat_price_table,
    expected_micros,
    start_compat,
    tokens_of,
)
from tests.proxy.conftest import UPSTREAM_KEY, Proxy, StartProxy, make_settings
from tests.proxy.fake_upstream import FakeUpstream

PATHS = ["/v1/moderations", "/v1/images/generations", "/v1/files"]
MODERATION = {"model": "omni-moderation-latest", "input": "hello"}


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


@pytest.fixture
async def proxy(start_proxy: StartProxy, upstream: FakeUpstream) -> Proxy:
    models = [*OPENAI_MODELS, "omni-moderation-*"]
    return await start_compat(
        start_proxy, upstream, passthrough_paths=PATHS, upstreams={"openai": {"models": models}}
    )


async def _post(
    proxy: Proxy, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    headers = proxy.auth() if headers is None else headers
    async with proxy.client.post(path, data=orjson.dumps(body), headers=headers) as response:
        if response.status == 200:  # a proxied answer: the spend headers are on it
            assert "x-spend-resets-at" in response.headers
        return response.status, await response.json()


async def _raw(proxy: Proxy, target: str, host: str = "evil.example") -> tuple[int, bytes]:
    """POST with a request target and Host written by hand (no client normalises them)."""
    server = proxy.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    body = orjson.dumps(MODERATION)
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {proxy.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1]), answer.partition(b"\r\n\r\n")[2]


async def test_a_configured_path_is_forwarded_and_not_charged_without_usage(
    proxy: Proxy,
) -> None:
    status, body = await _post(proxy, "/v1/moderations?trace=1", MODERATION)
    assert status == 200
    assert body["results"][0]["flagged"] is False
    [seen] = proxy.upstream.seen
    assert (seen.method, seen.path, seen.query_string) == ("POST", "/v1/moderations", "trace=1")
    assert seen.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen.json == MODERATION
    assert await proxy.ledger() == (0, 0)


async def test_a_configured_path_with_usage_is_charged_exactly(
    proxy: Proxy, price_table: PriceTable
) -> None:
    status, body = await _post(proxy, "/v1/images/generations", {"model": "test-model"})
    assert status == 200
    assert body["usage"]["input_tokens"] == 100
    [row] = await proxy.rows()
    assert tokens_of(row) == Usage(input_tokens=100, output_tokens=50)
    assert row["cost_micros"] == expected_micros(price_table, "test-model", tokens_of(row))
    assert row["cost_micros"] == 100 * 1 + 50 * 2
    assert (row["endpoint"], row["model"], row["upstream"]) == (
        "/v1/images/generations",
        "test-model",
        "openai",
    )


async def test_without_a_model_the_call_goes_to_the_first_upstream(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await _post(proxy, "/v1/moderations", {"input": "hello"}))[0] == 200
    async with proxy.client.get("/v1/files", headers=proxy.auth()) as response:
        assert response.status == 200
        assert await response.json() == {"object": "list", "data": []}
    with caplog.at_level(logging.WARNING):  # usage, but neither the call nor answer name a model
        assert (await _post(proxy, "/v1/images/generations", {"prompt": "a cat"}))[0] == 200
    assert [(s.method, s.path) for s in proxy.upstream.seen] == [
        ("POST", "/v1/moderations"),
        ("GET", "/v1/files"),
        ("POST", "/v1/images/generations"),
    ]
    [row] = await proxy.rows()
    assert (row["model"], row["cost_micros"], row["input_tokens"]) == ("", 0, 100)
    assert "no price" in caplog.text


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (MODERATION, {}, 401, "invalid_api_key"),
        ({"model": "llama-3"}, None, 404, "model_not_found"),
        ({"model": "no-price-model"}, None, 400, "model_not_priced"),
    ],
)
async def test_passthrough_errors_forward_and_charge_nothing(
    proxy: Proxy, body: Any, headers: dict[str, str] | None, status: int, code: str
) -> None:
    answer = await _post(proxy, "/v1/moderations", body, headers)
    assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    assert proxy.upstream.seen == []
    assert await proxy.ledger() == (0, 0)


async def test_passthrough_is_limit_checked(proxy: Proxy) -> None:
    await proxy.set_limit(0)
    status, body = await _post(proxy, "/v1/moderations", MODERATION)
    assert (status, body["error"]["code"]) == (429, "spend_limit_exceeded")
    assert proxy.upstream.seen == []


@pytest.mark.parametrize(
    "target",
    [
        "/v1/moderations/extra",
        "/v1//moderations",
        "/v1/x/../moderations",
        "/v1/moderations/../chat/completions",
        "/v1/moderations%2F..%2Fchat%2Fcompletions",
        "/v1/%2e%2e/moderations",
        "/v1/audio/speech",
        "http://evil.example/v1/audio/speech",
        "/v1/moderations/",
    ],
)
async def test_other_paths_stay_404_and_nothing_is_forwarded(proxy: Proxy, target: str) -> None:
    status, _ = await _raw(proxy, target)
    assert status == 404
    assert proxy.upstream.seen == []


async def test_the_client_host_and_absolute_targets_never_choose_the_upstream(
    proxy: Proxy,
) -> None:
    for target in ("http://evil.example/v1/moderations", "/v1/moderations"):
        status, _ = await _raw(proxy, target, host="evil.example:666")
        assert status == 200
    assert [seen.path for seen in proxy.upstream.seen] == ["/v1/moderations"] * 2
    upstream_host = proxy.upstream.url.removeprefix("http://").removesuffix("/v1")
    assert {seen.headers["Host"] for seen in proxy.upstream.seen} == {upstream_host}


@pytest.mark.parametrize(
    "path",
    [
        "/moderations",
        "/v1/",
        "/v1/a//b",
        "/v1/../admin/v1/users",
        "/v1/./moderations",
        "/v1/a%2Fb",
        "/v1/x?y=1",
        "http://evil.example/v1/x",
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/models",
        "/v1/models/gpt-4o",
        "/v1/usage",
    ],
)
def test_unsafe_or_taken_passthrough_paths_stop_start_up(
    tmp_path: Path, price_table: PriceTable, path: str
) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:1/v1", passthrough_paths=[path])
    with pytest.raises(ConfigError, match="passthrough_paths"):
        create_app(settings, prices=price_table)
