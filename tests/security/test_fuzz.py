"""Bad input, fuzzed with Hypothesis: bodies, headers, methods and paths (client and admin).

The proxy sits in front of ``BlankUpstream`` (answers anything, never with usage), so across
every example: no answer is the proxy's own 500 (``internal_error``), the ledger stays empty
(nothing is charged without usage), and no log record at ERROR or above carries a traceback.

Hypothesis drives a worker thread that talks raw HTTP (``rawhttp.py``) to the proxy serving on
the test's event loop; ``max_examples`` keeps the whole module to a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.conftest import Proxy, StartProxy
from tests.security.blank_upstream import BlankUpstream
from tests.security.conftest import ADMIN_TOKEN
from tests.security.rawhttp import RawAnswer, request

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CLIENT_PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/usage",
    "/v1/models",
]
ADMIN_PATHS = [
    "/admin/v1/users",
    "/admin/v1/users/alice/keys",
    "/admin/v1/limits",
    "/admin/v1/spend",
]
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _dumps(value: object) -> bytes:
    """JSON as a client might send it: stdlib ``json`` (big integers, escaped surrogates)."""
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
call_bodies = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=200).map(lambda raw: b'{"model": "test-model", "x": "' + raw + b'"}'),
    json_values.map(_dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "model": json_values | st.sampled_from(["test-model", "gpt-4o-mini", ""]),
            "stream": json_values,
            "stream_options": json_values,
            "messages": json_values,
            "input": json_values,
        },
    ).map(_dumps),
    st.text(min_size=0, max_size=20).map(lambda t: ("x" * 200_000 + t).encode()),
)
header_names = st.text(TOKEN_CHARS, min_size=1, max_size=20)
header_values = st.binary(max_size=60)


@pytest.fixture
async def fuzz_proxy(start_proxy: StartProxy, blank_upstream: BlankUpstream) -> Proxy:
    return await start_proxy(
        admin_token=ADMIN_TOKEN, upstreams={"openai": {"base_url": blank_upstream.url}}
    )


def _head(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: proxy"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines)


def _check(answer: RawAnswer) -> None:
    assert answer.status != 0, f"no answer: {answer.body[:200]!r}"
    assert answer.error_code() != "internal_error", answer.body[:300]
    assert answer.status < 500 or answer.status == 503, (answer.status, answer.body[:300])


async def _in_thread(run: Callable[[], None]) -> None:
    await asyncio.wait_for(asyncio.to_thread(run), timeout=100)


def _client_protocol_error(record: logging.LogRecord) -> bool:
    """aiohttp's own record of a request it could not parse (answered 400 before any proxy code
    ran). aiohttp logs these at ERROR with a traceback (``web_protocol.handle_error``); they are
    the client's fault, not an unhandled exception of the proxy (see README "Reliability")."""
    exc = record.exc_info[1] if record.exc_info else None
    return record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError)


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        r
        for r in caplog.records
        if (r.levelno >= logging.ERROR or r.exc_info) and not _client_protocol_error(r)
    ]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad[:5]]


async def _assert_clean(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    assert await proxy.rows() == []
    _no_tracebacks(caplog)


async def test_random_bodies(fuzz_proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    port, auth = fuzz_proxy.client.port, fuzz_proxy.auth()["Authorization"].encode()

    @FUZZ
    @given(st.sampled_from(CLIENT_PATHS[:4]), call_bodies)
    def run(path: str, body: bytes) -> None:
        answer = request(port, _head("POST", path, [(b"Authorization", auth)]), body)
        _check(answer)

    await _in_thread(run)
    await _assert_clean(fuzz_proxy, caplog)


async def test_random_headers(fuzz_proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    port, auth = fuzz_proxy.client.port, fuzz_proxy.auth()["Authorization"].encode()
    body = orjson.dumps({"model": "test-model", "messages": []})

    @FUZZ
    @given(
        st.sampled_from(CLIENT_PATHS + ADMIN_PATHS),
        st.lists(st.tuples(header_names.map(str.encode), header_values), max_size=6),
        st.sampled_from([b"", auth, b"Bearer " + ADMIN_TOKEN.encode(), b"Bearer \xff\xfe"]),
    )
    def run(path: str, headers: list[tuple[bytes, bytes]], authorization: bytes) -> None:
        extra = [(b"Authorization", authorization)] if authorization else []
        names = {b"content-length", b"connection", b"transfer-encoding", b"host"}
        headers = [(n, v) for n, v in headers if n.lower() not in names]
        method = "GET" if path in ("/v1/usage", "/v1/models") else "POST"
        _check(request(port, _head(method, path, extra + headers), body))

    await _in_thread(run)
    await _assert_clean(fuzz_proxy, caplog)


async def test_random_methods_and_paths(
    fuzz_proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    port, auth = fuzz_proxy.client.port, fuzz_proxy.auth()["Authorization"].encode()
    segment = st.text("abcdefgz019-._~%2e%2F/" + "%00%ff%c3%28", min_size=0, max_size=12)
    paths = st.one_of(
        st.sampled_from(CLIENT_PATHS + ADMIN_PATHS),
        st.tuples(st.sampled_from(["/v1/", "/admin/v1/", "/", "//"]), segment).map("".join),
        st.tuples(st.sampled_from(CLIENT_PATHS + ADMIN_PATHS), segment).map("/".join),
    )
    methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | (
        st.text(TOKEN_CHARS, min_size=1, max_size=10)
    )

    @FUZZ
    @given(methods, paths, st.booleans())
    def run(method: str, path: str, admin: bool) -> None:
        token = b"Bearer " + ADMIN_TOKEN.encode() if admin else auth
        answer = request(port, _head(method, path, [(b"Authorization", token)]), b"{}")
        _check(answer)

    await _in_thread(run)
    await _assert_clean(fuzz_proxy, caplog)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("100k nested arrays", b"[" * 100_000 + b"]" * 100_000),
        ("100k nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        ("nested model", b'{"model": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        ("invalid utf-8", b'{"model": "test-model", "messages": "\xff\xfe\xc3\x28"}'),
        ("lone surrogate", b'{"model": "\\ud800", "messages": []}'),
        ("top-level list", b'[{"model": "test-model"}]'),
        ("top-level string", b'"test-model"'),
        ("empty", b""),
    ],
)
async def test_pathological_bodies_are_400(
    fuzz_proxy: Proxy, caplog: pytest.LogCaptureFixture, name: str, body: bytes
) -> None:
    caplog.set_level(logging.WARNING)
    port, auth = fuzz_proxy.client.port, fuzz_proxy.auth()["Authorization"].encode()
    head = _head("POST", "/v1/chat/completions", [(b"Authorization", auth)])
    answer = await asyncio.to_thread(request, port, head, body)
    assert answer.status == 400, (name, answer.body[:200])
    await _assert_clean(fuzz_proxy, caplog)


async def test_body_over_the_limit_is_413(fuzz_proxy: Proxy, blank_upstream: BlankUpstream) -> None:
    port, auth = fuzz_proxy.client.port, fuzz_proxy.auth()["Authorization"].encode()
    head = _head("POST", "/v1/chat/completions", [(b"Authorization", auth)])
    body: Any = b'{"model": "test-model", "x": "' + b"y" * (11 * 1024 * 1024) + b'"}'
    answer = await asyncio.to_thread(request, port, head, body)
    assert answer.status == 413
    assert blank_upstream.paths == []
