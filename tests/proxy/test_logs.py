"""Logging: JSON lines, the redaction filter, and no secret in any line after real traffic."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from pathlib import Path

import orjson
import pytest

from proxy.keys import SETTINGS
from proxy.logs import (
    REDACTED,
    JsonFormatter,
    RedactionFilter,
    TextFormatter,
    configure_logging,
    secrets_of,
)
from proxy.settings import Settings
from tests.proxy.conftest import StartProxy, make_settings

ADMIN_TOKEN = "admin-token-0123456789"
UPSTREAM_KEY = "upstream-literal-key-42"  # no sk- prefix: only the configured literal catches it
CHAT = "/v1/chat/completions"
BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
ACCESS_FIELDS = {
    "request_id",
    "user",
    "model",
    "upstream",
    "status",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_micros",
    "estimated",
    "upstream_ms",
    "total_ms",
}


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("proxy.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_the_filter_scrubs_message_arguments_extras_and_tracebacks() -> None:
    redact = RedactionFilter([ADMIN_TOKEN, UPSTREAM_KEY, ""])
    user_key = "sk-sp-" + "A1b2_C3-d4" * 4
    record = _record(
        "login %s with %r", user_key, {"token": ADMIN_TOKEN}, ctx={"keys": [UPSTREAM_KEY, 3]}
    )
    try:
        raise RuntimeError(f"upstream refused {UPSTREAM_KEY}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert redact.filter(record) is True
    line = JsonFormatter().format(record)
    for secret in (user_key, ADMIN_TOKEN, UPSTREAM_KEY):
        assert secret not in line
    payload = orjson.loads(line)
    assert payload["msg"] == f"login {REDACTED} with {{'token': '{REDACTED}'}}"
    assert payload["ctx"] == {"keys": [REDACTED, 3]}
    assert f"upstream refused {REDACTED}" in payload["exc"]
    assert {"ts", "level", "logger", "pid"} <= payload.keys()
    assert payload["ts"].endswith("Z")
    assert payload["level"] == "warning"
    assert redact.scrub("sk-short and sk-12345678") == f"sk-short and {REDACTED}"


def test_bad_arguments_do_not_break_logging() -> None:
    record = _record("%d items", "not a number")
    assert RedactionFilter().filter(record) is True
    assert record.getMessage() == "%d items (unformattable arguments)"


def test_text_format_appends_the_extra_fields() -> None:
    line = TextFormatter().format(_record("GET %s", "/healthz", status=200, user=None))
    assert line.endswith("proxy.test: GET /healthz status=200")


def test_secrets_come_from_the_settings_and_bad_levels_are_refused(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "http://u/v1", admin_token=ADMIN_TOKEN, upstreams={"openai": {"api_key": "k1"}}
    )
    assert secrets_of(settings) == [ADMIN_TOKEN, "k1"]
    assert secrets_of(Settings()) == []
    with pytest.raises(ValueError, match="log_level"):
        configure_logging(Settings(log_level="loud"))


async def _traffic(start_proxy: StartProxy, log_format: str) -> tuple[str, list[str]]:
    """Calls carrying every secret, logged through ``configure_logging``: (output, secrets)."""
    proxy = await start_proxy(
        admin_token=ADMIN_TOKEN,
        upstreams={"openai": {"api_key": UPSTREAM_KEY}},
        log_level="DEBUG",
        log_format=log_format,
    )
    wrong_key = "sk-sp-" + "w" * 40
    stream = io.StringIO()
    setup = configure_logging(proxy.app[SETTINGS], stream)
    try:
        headers = {**proxy.auth(), "x-request-id": proxy.key}  # the key lands in the id
        async with proxy.client.post(CHAT, json=BODY, headers=headers) as response:
            assert response.status == 200
        async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth(wrong_key)) as response:
            assert response.status == 401
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with proxy.client.get("/admin/v1/users", headers=admin) as response:
            assert response.status == 200
        logging.getLogger("proxy.test").warning(
            "careless %s", proxy.key, extra={"ctx": {"upstream": UPSTREAM_KEY}}
        )
        await proxy.drain()
    finally:
        await asyncio.to_thread(setup.close)  # joins the writer thread: not on the event loop
    return stream.getvalue(), [proxy.key, wrong_key, ADMIN_TOKEN, UPSTREAM_KEY]


async def test_json_lines_have_the_access_fields_and_no_secret(start_proxy: StartProxy) -> None:
    output, secrets = await _traffic(start_proxy, "json")
    lines = [orjson.loads(line) for line in output.splitlines()]  # every line is one object
    assert lines
    access = [line for line in lines if line["logger"] == "proxy.access"]
    assert [line["status"] for line in access] == [200, 401, 200]
    call = access[0]
    assert call.keys() >= ACCESS_FIELDS
    assert (call["user"], call["model"], call["upstream"]) == ("alice", "test-model", "openai")
    assert (call["cost_micros"], call["estimated"]) == (190, False)
    assert call["request_id"] == REDACTED  # the client sent its key as the request id
    for secret in secrets:
        assert secret not in output
    assert any(line["msg"] == f"careless {REDACTED}" for line in lines)


async def test_text_lines_carry_no_secret_either(start_proxy: StartProxy) -> None:
    output, secrets = await _traffic(start_proxy, "text")
    assert "proxy.access: POST /v1/chat/completions 200" in output
    assert "user=alice" in output
    for secret in secrets:
        assert secret not in output
