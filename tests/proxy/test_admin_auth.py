"""The admin token: every admin route refuses everything else, and an empty token disables the
API (and refuses to start on a non-loopback host). See ``proxy/admin_auth.py``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from limits.errors import ConfigError
from limits.keys import generate_key, hash_key
from proxy.admin import ADMIN_PREFIX, openapi_document
from proxy.admin_auth import check_admin_token, is_loopback
from proxy.app import create_app
from proxy.settings import Settings
from tests.proxy.admin_client import TOKEN
from tests.proxy.conftest import Proxy, StartProxy

OPENAPI_URL = ADMIN_PREFIX + "/openapi.json"
_EXAMPLES = {"{user}": "alice", "{group}": "eng", "{id}": "1"}


def admin_routes(proxy: Proxy) -> list[tuple[str, str]]:
    """Every (method, concrete URL) of the admin API on the app's router, except the document."""
    found = []
    for route in proxy.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith(ADMIN_PREFIX) and path != OPENAPI_URL:
            for placeholder, value in _EXAMPLES.items():
                path = path.replace(placeholder, value)
            found.append((route.method, path))
    assert len(found) == 21
    return found


async def status_and_error(
    proxy: Proxy, method: str, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    async with proxy.client.request(method, url, json={}, headers=headers) as response:
        body = await response.json()
        return response.status, body["error"]


async def test_every_admin_route_refuses_user_keys_and_missing_or_wrong_tokens(
    start_proxy: StartProxy,
) -> None:
    proxy = await start_proxy(admin_token=TOKEN)
    revoked = generate_key()
    at = proxy.clock.now()
    record = await proxy.store.create_key("alice", hash_key(revoked), revoked[:12], None, at)
    await proxy.store.revoke_key(record.id, at)
    credentials = {
        "no key": {},
        "user key": proxy.auth(),
        "revoked key": proxy.auth(revoked),
        "wrong token": {"Authorization": f"Bearer {TOKEN}x"},
        "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "token as x-api-key": {"x-api-key": TOKEN},
        "basic scheme": {"Authorization": f"Basic {TOKEN}"},
        "empty bearer": {"Authorization": "Bearer "},
    }
    for method, url in admin_routes(proxy):
        for name, headers in credentials.items():
            status, error = await status_and_error(proxy, method, url, headers)
            assert (status, error["code"]) == (401, "invalid_admin_token"), (method, url, name)
    async with proxy.client.get("/v1/usage", headers=proxy.auth()) as response:
        assert response.status == 200  # nothing was deleted or revoked on the way


async def test_a_401_says_how_to_authenticate(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(admin_token=TOKEN)
    async with proxy.client.get(ADMIN_PREFIX + "/users") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    headers = {"Authorization": "Bearer tökén-\u2603"}  # not ASCII: still a plain 401
    async with proxy.client.get(ADMIN_PREFIX + "/users", headers=headers) as response:
        assert response.status == 401


async def test_an_empty_token_disables_every_admin_route(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()  # admin_token = "" on 127.0.0.1
    for method, url in admin_routes(proxy):
        for headers in ({"Authorization": "Bearer "}, proxy.auth(), {}):
            status, error = await status_and_error(proxy, method, url, headers)
            assert (status, error["code"]) == (503, "admin_api_disabled"), (method, url)


@pytest.mark.parametrize("token", ["", TOKEN])
async def test_the_openapi_document_is_public(start_proxy: StartProxy, token: str) -> None:
    proxy = await start_proxy(admin_token=token)
    async with proxy.client.get(OPENAPI_URL) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == openapi_document()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("proxy.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_an_empty_token_is_refused_on_a_non_loopback_host() -> None:
    check_admin_token(Settings())
    check_admin_token(Settings(server={"host": "0.0.0.0"}, admin_token=TOKEN))
    exposed = Settings(server={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match=r"admin_token is empty but server.host = '0.0.0.0'"):
        check_admin_token(exposed)
    with pytest.raises(ConfigError):
        create_app(exposed)


async def test_serve_refuses_to_start_and_prints_one_line(tmp_path: Path) -> None:
    config = tmp_path / "spend-proxy.toml"
    db = tmp_path / "spend.db"
    config.write_text(f'[server]\nhost = "0.0.0.0"\nport = 1\n[storage]\nsqlite_path = "{db}"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "serve",
        "--config",
        str(config),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("spend-proxy: error: admin_token is empty but server.host")
    assert not db.exists()  # refused before touching storage
