"""The access middleware: ``x-request-id`` on every answer and one access line per request."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from tests.proxy.conftest import Proxy

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
GENERATED = re.compile(r"[0-9a-f]{32}")


async def _request_id(proxy: Proxy, sent: str | None, *, auth: bool = True) -> str:
    headers = proxy.auth() if auth else {}
    if sent is not None:
        headers["x-request-id"] = sent
    async with proxy.client.post(CHAT, json=BODY, headers=headers) as response:
        return response.headers["x-request-id"]


async def test_a_sane_client_request_id_comes_back_else_one_is_made(proxy: Proxy) -> None:
    assert await _request_id(proxy, "trace-42 /retry:1") == "trace-42 /retry:1"
    assert await _request_id(proxy, "x" * 128) == "x" * 128
    made = [await _request_id(proxy, "x" * 129), await _request_id(proxy, None)]
    assert all(GENERATED.fullmatch(rid) for rid in made)
    assert made[0] != made[1]
    assert await _request_id(proxy, "mine", auth=False) == "mine"  # a 401 carries it too
    async with proxy.client.get("/healthz", headers={"x-request-id": "probe-1"}) as response:
        assert response.headers["x-request-id"] == "probe-1"
    async with proxy.client.get("/no/such/path") as response:
        assert response.status == 404
        assert GENERATED.fullmatch(response.headers["x-request-id"])


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "proxy.access"]


async def test_one_access_line_per_proxied_call_with_its_facts(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    headers = {**proxy.auth(), "x-request-id": "req-7"}
    async with proxy.client.post(CHAT, json=BODY, headers=headers) as response:
        assert response.status == 200
        ledger_id = response.headers["x-spend-request-id"]
    [line] = _access_lines(caplog)
    fields = vars(line)
    expected = {
        "request_id": "req-7",
        "method": "POST",
        "path": CHAT,
        "route": CHAT,
        "status": 200,
        "user": "alice",
        "model": "test-model",
        "upstream": "openai",
        "ledger_request_id": ledger_id,
        "upstream_request_id": None,
        "input_tokens": 80,  # uncached prompt tokens: the 20 cached ones are cache reads
        "output_tokens": 50,
        "cache_read_tokens": 20,
        "cache_write_tokens": 0,
        "cost_micros": 190,
        "estimated": False,
        "denied_source": None,
        "fail_open": False,
    }
    assert {key: fields[key] for key in expected} == expected
    assert 0 <= fields["upstream_ms"] <= fields["total_ms"]
    assert line.levelno == logging.INFO
    assert line.getMessage() == f"POST {CHAT} 200"
    assert ledger_id in {row["request_id"] for row in await proxy.rows()}


async def test_upstream_request_id_is_relayed_and_logged(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    proxy.upstream.response_headers = {"x-request-id": "req_upstream"}
    assert await _request_id(proxy, "mine") == "req_upstream"  # OpenAI's id, for its support
    [line] = _access_lines(caplog)
    assert (vars(line)["request_id"], vars(line)["upstream_request_id"]) == ("mine", "req_upstream")


async def test_denials_and_errors_get_access_lines_and_probes_stay_at_debug(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    await proxy.set_limit(0)
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 429
    async with proxy.client.get("/healthz") as response:
        assert response.status == 200
    [denied] = _access_lines(caplog)
    assert (vars(denied)["status"], vars(denied)["denied_source"]) == (429, "user")
    assert vars(denied)["upstream_ms"] is None  # never forwarded
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="proxy.access")
    async with proxy.client.get("/metrics") as response:
        assert response.status == 200
    [probe] = _access_lines(caplog)
    assert (probe.levelno, vars(probe)["route"]) == (logging.DEBUG, "/metrics")
