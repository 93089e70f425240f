"""Proxy test harness: the real app (``create_app``) on an embedded SQLite file in ``tmp_path``,
in front of the fake upstream (``fake_upstream.py``) on loopback.

``start_proxy(**settings_overrides)`` builds and starts a proxy; the ``proxy`` fixture is one
with default settings. Each has user ``alice`` with a key, and the test's own handle on the same
database (``Proxy.store``) for seeding limits and reading the ledger.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from blockbuster import BlockBuster
from pytest_aiohttp import AiohttpClient as AiohttpClient  # re-exported for other test modules
from pytest_aiohttp import AiohttpServer

from limits import LimitConfig, PeriodKind, PriceTable, bounds
from limits.keys import display_prefix, generate_key, hash_key
from limits.ports import Directory
from limits.store.prices import load_price_table
from limits.store.sql import SqlStore
from proxy.app import RECORDER, create_app, price_overrides
from proxy.keys import SETTINGS
from proxy.settings import Settings
from tests.conftest import FakeClock
from tests.proxy.fake_upstream import FakeUpstream
from tests.proxy.fakes import FlakyDirectory

UPSTREAM_KEY = "sk-upstream-secret"
# USD per million tokens: 1 micro-dollar per input token, 2 per output, 0.5 per cached token.
TEST_PRICES = {"test-model": {"input": "1", "output": "2", "cache_read": "0.5"}}
MODELS = ["test-model", "gpt-4o-mini", "no-price-model", "text-embedding-3-small"]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def make_settings(tmp_path: Path, upstream_url: str, **over: Any) -> Settings:
    """Settings for a test proxy: embedded storage in ``tmp_path``, one upstream."""
    base: dict[str, Any] = {
        "storage": {
            "sqlite_path": str(tmp_path / "spend.db"),
            "spool_path": str(tmp_path / "spool.jsonl"),
            "ledger_flush_interval_s": 0.05,
        },
        "server": {"shutdown_timeout_s": 5},
        "upstreams": {
            "openai": {"base_url": upstream_url, "api_key": UPSTREAM_KEY, "models": MODELS}
        },
        "prices": TEST_PRICES,
    }
    return Settings(**_merge(base, over))


def unused_port_url() -> str:
    """An http URL on loopback where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# The modules that serve requests and run in the background: a blocking call with one of them
# on the stack fails the test. (Start-up and the tests' own set-up are not watched.)
WATCHED_MODULES = [
    "proxy.auth",
    "proxy.calls",
    "proxy.endpoints",
    "proxy.estimate",
    "proxy.forwarding",
    "proxy.handlers",
    "proxy.access",
    "proxy.metrics",
    "proxy.middleware",
    "proxy.models",
    "proxy.passthrough",
    "proxy.sse",
    "proxy.streaming",
    "proxy.usage",
    "limits.directory",
    "limits.enforcer",
    "limits.recorder",
    "limits.refresher",
    "limits.store.memory",
]


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    """Blocking-call detection on the event loop (STYLE §6, as in aiohttp's own tests)."""
    detector = BlockBuster(WATCHED_MODULES)
    detector.activate()
    yield detector
    detector.deactivate()


@pytest.fixture(scope="session")
def price_table() -> PriceTable:
    """litellm's map under the test overrides, read once for the whole run."""
    return load_price_table(price_overrides(Settings(prices=TEST_PRICES)))


@dataclass
class Proxy:
    app: web.Application
    client: TestClient[web.Request, web.Application]
    store: SqlStore
    upstream: FakeUpstream
    key: str
    user_id: int
    clock: FakeClock
    statuses: list[tuple[str, int]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("/v1"))

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def drain(self) -> None:
        """Wait until every settled call is in the counters and the ledger."""
        await self.app[RECORDER].drain()

    async def ledger(self) -> tuple[int, int]:
        """``(cost_micros, calls)`` in alice's ledger this month."""
        await self.drain()
        rows = await self.store.spend(bounds(PeriodKind.MONTH, self.clock.now()), "user")
        return next(((cost, calls) for name, cost, calls in rows if name == "alice"), (0, 0))

    async def rows(self) -> list[dict[str, Any]]:
        """Every ledger row, read straight from the SQLite file."""
        await self.drain()
        return await asyncio.to_thread(_ledger_rows, self.app[SETTINGS].storage.sqlite_path)

    def chat_posts(self) -> int:
        """Requests the proxy answered on ``/v1/chat/completions`` (retries included)."""
        return sum(1 for path, _ in self.statuses if path == "/v1/chat/completions")

    async def spent(self) -> int:
        """alice's spent micros as the counters (``/v1/usage``) say."""
        await self.drain()
        async with self.client.get("/v1/usage", headers=self.auth()) as response:
            assert response.status == 200
            status = await response.json()
        spent: int = status["spent_micros"]
        return spent

    async def set_limit(self, limit_micros: int) -> None:
        await self.store.set_limit_config(LimitConfig(enabled=True, period=PeriodKind.MONTH))
        await self.store.set_user_limit("alice", limit_micros)
        self.clock.advance(2)  # past the directory cache's poll interval: the change shows


def _ledger_rows(path: str) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM ledger ORDER BY id")]


async def seed(store: SqlStore, clock: FakeClock) -> tuple[str, int]:
    """User alice with one key: ``(key, user_id)``."""
    user = await store.create_user("alice", [], clock.now())
    key = generate_key()
    await store.create_key("alice", hash_key(key), display_prefix(key), None, clock.now())
    return key, user.id


StartProxy = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    yield fake
    fake.released.set()


@pytest.fixture
async def start_proxy(
    tmp_path: Path,
    upstream: FakeUpstream,
    clock: FakeClock,
    price_table: PriceTable,
    aiohttp_client: AiohttpClient,
    blockbuster: BlockBuster,
) -> AsyncIterator[StartProxy]:
    stores: list[SqlStore] = []
    proxies: list[Proxy] = []
    alice: list[tuple[str, int]] = []  # seeded once: a restarted proxy finds the same user

    async def start(
        wrap_directory: Callable[[Directory], Directory] | None = None, **over: Any
    ) -> Proxy:
        settings = make_settings(tmp_path, upstream.url, **over)
        store = await SqlStore.connect(settings.storage.effective_database_url)
        stores.append(store)
        await store.migrate()
        if not alice:
            alice.append(await seed(store, clock))
        key, user_id = alice[0]
        directory = wrap_directory(store) if wrap_directory else None
        app = create_app(settings, clock=clock, prices=price_table, directory=directory)
        proxy = Proxy(app, None, store, upstream, key, user_id, clock)  # type: ignore[arg-type]
        app.on_response_prepare.append(_recorder(proxy.statuses))
        proxy.client = await aiohttp_client(app)
        proxies.append(proxy)
        return proxy

    yield start
    # Shut the apps down (their pollers use the store) before closing the stores under them.
    for proxy in proxies:
        await proxy.client.close()
    for store in stores:
        await store.close()


def _recorder(
    statuses: list[tuple[str, int]],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def record(request: web.Request, response: web.StreamResponse) -> None:
        statuses.append((request.path, response.status))

    return record


async def start_with_flaky_directory(start: StartProxy) -> tuple[Proxy, FlakyDirectory]:
    """A proxy whose directory (keys, limits) the test can switch to failing."""
    made: list[FlakyDirectory] = []

    def wrap(inner: Directory) -> Directory:
        made.append(FlakyDirectory(inner))
        return made[0]

    proxy = await start(wrap)
    return proxy, made[0]


@pytest.fixture
async def proxy(start_proxy: StartProxy) -> Proxy:
    return await start_proxy()
