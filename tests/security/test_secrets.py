"""Secrets at rest and in logs; constant-time credential checks; users see only their own usage.

1. No plaintext key in the database: after keys are made (admin API and store), every text
   cell of every table is searched for any key's secret part (all but the stored display
   prefix).
2. Credential comparisons cannot leak by timing: the admin token is compared with
   ``hmac.compare_digest``; an API key is never compared at all, only its SHA-256 digest is
   looked up (read from the source: a timing test would be flaky and prove little).
3. No user key, admin token or upstream key in any log line of a run with successes, 401s,
   upstream errors and an unreachable upstream, all loggers captured at DEBUG.
4. ``GET /v1/usage`` answers the key owner's status; nothing a client adds (query, path,
   headers naming another user) shows someone else's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
import traceback

import pytest

import proxy.admin_auth
import proxy.auth
from limits.keys import display_prefix, generate_key, hash_key
from proxy.keys import SETTINGS
from tests.proxy.conftest import UPSTREAM_KEY, Proxy, StartProxy, unused_port_url
from tests.security.conftest import ADMIN_TOKEN

CHAT = "/v1/chat/completions"
BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _make_key(proxy: Proxy, user: str) -> str:
    async with proxy.client.post("/admin/v1/users", json={"name": user}, headers=_admin()) as r:
        assert r.status == 201, await r.text()
    path = f"/admin/v1/users/{user}/keys"
    async with proxy.client.post(path, json={"label": "sec"}, headers=_admin()) as r:
        assert r.status == 201, await r.text()
        key: str = (await r.json())["key"]
    proxy.clock.advance(2)  # past the directory cache's poll interval
    return key


def _text_cells(path: str) -> list[str]:
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        cells: list[str] = []
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                cells += [str(value) for value in row if isinstance(value, str | bytes)]
    return cells


async def test_no_plaintext_key_anywhere_in_the_database(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(admin_token=ADMIN_TOKEN)
    keys = [proxy.key, await _make_key(proxy, "bob"), await _make_key(proxy, "carol")]
    extra = generate_key()
    at = proxy.clock.now()
    await proxy.store.create_key("bob", hash_key(extra), display_prefix(extra), None, at)
    keys.append(extra)
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as response:
        assert response.status == 200
    await proxy.drain()
    cells = await asyncio.to_thread(_text_cells, proxy.app[SETTINGS].storage.sqlite_path)
    assert cells, "the dump found no text at all"
    for key in keys:
        secret = key[len(display_prefix(key)) :]
        leaks = [cell for cell in cells if secret in cell or secret[:16] in cell]
        assert not leaks, f"a key's secret part is stored in plaintext: {leaks[:1]}"
    assert any(hash_key(proxy.key) in cell for cell in cells), "the digest is what is stored"


def test_credentials_are_checked_in_constant_time_or_by_digest() -> None:
    admin_source = inspect.getsource(proxy.admin_auth)
    assert "hmac.compare_digest(presented, token)" in admin_source
    assert "== token" not in admin_source
    assert "token ==" not in admin_source
    auth_source = inspect.getsource(proxy.auth._authenticate)
    assert "principal_for_key(hash_key(key))" in auth_source
    assert "==" not in auth_source  # no comparison of the presented key itself


def _all_log_text(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


async def test_no_secret_in_any_log_line(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(admin_token=ADMIN_TOKEN)
    bob = await _make_key(proxy, "bob")
    auths = [proxy.auth(), proxy.auth(bob), proxy.auth(bob[:-1] + "x"), {"x-api-key": bob}]
    stream = BODY | {"stream": True}
    for status in (200, 500, 429):
        proxy.upstream.status = status
        for headers in auths:
            for body in (BODY, stream):
                async with proxy.client.post(CHAT, json=body, headers=headers) as r:
                    await r.read()
    wrong_admin = {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}x"}
    for headers in (wrong_admin, proxy.auth(), {"x-api-key": ADMIN_TOKEN}, _admin()):
        async with proxy.client.get("/admin/v1/users", headers=headers) as r:
            await r.read()
    down = await start_proxy(
        admin_token=ADMIN_TOKEN, upstreams={"openai": {"base_url": unused_port_url()}}
    )
    async with down.client.post(CHAT, json=BODY, headers=down.auth()) as r:
        assert r.status == 502
    await proxy.set_limit(1)
    proxy.upstream.status = 200
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as r:
        await r.read()
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as r:
        assert r.status == 429
    await proxy.drain()
    text = _all_log_text(caplog.records)
    assert len(caplog.records) > 5, "nothing was logged: the scan proves nothing"
    for name, secret in [
        ("user key", proxy.key),
        ("user key", bob),
        ("admin token", ADMIN_TOKEN),
        ("upstream key", UPSTREAM_KEY),
    ]:
        for fragment in (secret, secret[-16:]):
            assert fragment not in text, f"the {name} appears in the logs"


async def test_usage_shows_only_the_callers_own_status(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(admin_token=ADMIN_TOKEN)
    bob = await _make_key(proxy, "bob")
    async with proxy.client.post(CHAT, json=BODY, headers=proxy.auth()) as r:
        assert r.status == 200
    await proxy.drain()
    attempts = [
        ("/v1/usage", {}),
        ("/v1/usage?user=alice", {}),
        ("/v1/usage?user_id=1&name=alice", {}),
        ("/v1/usage", {"x-user": "alice", "x-spend-user": "alice", "OpenAI-Organization": "alice"}),
    ]
    for path, extra in attempts:
        async with proxy.client.get(path, headers=proxy.auth(bob) | extra) as r:
            assert r.status == 200
            status = await r.json()
        assert (status["user"], status["spent_micros"]) == ("bob", 0), path
    for path in ("/v1/usage/alice", "/v1/users/alice/usage", "/admin/v1/users/alice/usage"):
        async with proxy.client.get(path, headers=proxy.auth(bob)) as r:
            assert r.status in (401, 404), path
            assert "spent_micros" not in await r.text()
    async with proxy.client.get("/v1/usage", headers=proxy.auth()) as r:
        status = await r.json()
    assert status["user"] == "alice"
    assert status["spent_micros"] > 0
