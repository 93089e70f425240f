"""The client cannot choose where the proxy connects, and cannot smuggle header lines.

An "evil" TCP server listens on loopback and counts every connection it accepts. Requests whose
``Host`` header, absolute-form target, ``//host`` prefix, dot segments or percent-encoded dots
name it (or try to reach the admin API through ``/v1/..``) are sent raw (``rawhttp.py``); the
proxy must contact only the configured upstream (``upstream.seen`` lists each request it got),
the evil server must accept no connection, and no answer may be the proxy's own 500.

Header lines with CR, LF or NUL inside a value are rejected by aiohttp's parser with 400
before any proxy code runs: nothing is forwarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.proxy.conftest import Proxy
from tests.proxy.fake_upstream import FakeUpstream
from tests.security.conftest import ADMIN_TOKEN
from tests.security.rawhttp import request


class Evil:
    """A loopback server that only counts the connections it accepts."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@pytest.fixture
async def evil() -> AsyncIterator[Evil]:
    target = Evil()
    server = await asyncio.start_server(target._accept, "127.0.0.1", 0)
    target.port = server.sockets[0].getsockname()[1]
    yield target
    server.close()
    await server.wait_closed()


BODY = b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}'


def _targets(evil_port: int) -> list[tuple[str, str]]:
    """(request target, Host header) pairs, each an attempt to pick the upstream."""
    evil = f"127.0.0.1:{evil_port}"
    return [
        ("/v1/chat/completions", evil),
        (f"http://{evil}/v1/chat/completions", evil),
        (f"http://{evil}/v1/chat/completions", "proxy"),
        (f"//{evil}/v1/chat/completions", "proxy"),
        (f"/v1/chat/completions?url=http://{evil}/", evil),
        (f"/v1/chat/completions/../../{evil}/v1/chat/completions", "proxy"),
        ("/v1/../admin/v1/users", "proxy"),
        ("/v1/%2e%2e/admin/v1/users", "proxy"),
        ("/v1/%2E%2E/%2E%2E/admin/v1/users", "proxy"),
        ("/v1/chat/completions/%2e%2e%2f%2e%2e%2fadmin", "proxy"),
        (f"/v1/%2F%2F{evil}/chat/completions", "proxy"),
        (f"/v1/chat/completions@{evil}", "proxy"),
        ("/v1/chat/completions#@evil", "proxy"),
    ]


async def test_only_the_configured_upstream_is_ever_contacted(
    proxy: Proxy, upstream: FakeUpstream, evil: Evil
) -> None:
    port = proxy.client.port
    auth = f"Authorization: Bearer {proxy.key}".encode()
    for target, host in _targets(evil.port):
        for extra in (b"", b"\r\nX-Forwarded-Host: " + host.encode()):
            head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\n".encode() + auth + extra
            answer = await asyncio.to_thread(request, port, head, BODY)
            assert answer.status in (200, 400, 401, 404, 405), (target, answer)
            assert answer.error_code() != "internal_error", target
    assert evil.connections == 0
    assert upstream.seen, "no attempt reached the upstream: the check proves nothing"
    assert {seen.path for seen in upstream.seen} == {"/v1/chat/completions"}


async def test_dot_segments_do_not_reach_the_admin_api_with_a_user_key(proxy: Proxy) -> None:
    port = proxy.client.port
    for target in ("/v1/../admin/v1/users", "/v1/%2e%2e/admin/v1/users"):
        head = f"GET {target} HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {proxy.key}".encode()
        answer = await asyncio.to_thread(request, port, head)
        assert answer.status in (401, 404, 503), (target, answer)
        assert b'"name"' not in answer.body


@pytest.mark.parametrize(
    "header",
    [
        b"X-Evil: a\rInjected: 1",
        b"X-Evil: a\nInjected: 1",
        b"X-Evil: a\x00b",
        b"X-Evil: a\r\n Injected: folded",
        b"Bad Name: 1",
        b"X-Evil:\ra",
    ],
)
async def test_header_line_tricks_are_rejected_and_nothing_is_forwarded(
    proxy: Proxy, upstream: FakeUpstream, header: bytes
) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer "
    head += proxy.key.encode() + b"\r\n" + header
    answer = await asyncio.to_thread(request, proxy.client.port, head, BODY)
    assert answer.status == 400, answer
    assert b"Host" not in answer.body  # rejected for the trick, not for a missing Host
    assert upstream.seen == []


async def test_admin_token_cannot_be_smuggled_as_a_client_route(proxy: Proxy) -> None:
    head = f"GET /v1/usage HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {ADMIN_TOKEN}".encode()
    answer = await asyncio.to_thread(request, proxy.client.port, head)
    assert answer.status == 401
