"""An in-process proxy on the shared Redis (a unique key prefix) and a SQLite ledger, for the
``reserve`` mode tests (``test_reserve_*.py``).

The app is served as ``spend-proxy serve`` serves it (an ``AppRunner`` that does not cancel a
handler whose client left). ``ReserveRig`` holds the running app, a client, the test's own
handles on the counters and the ledger, and an :class:`InFlight` tracker, so a test can wait
until every proxy handler (also those of calls whose client gave up) has returned before it
inspects Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from limits import LimitConfig, PeriodKind, bounds
from limits.keys import display_prefix, generate_key, hash_key
from limits.refresher import Refresher
from limits.store.prices import load_price_table
from limits.store.redis import RedisCounterStore
from limits.store.redis_scripts import redis_key
from limits.store.sql import SqlStore
from proxy.app import RECORDER, create_app, price_overrides
from proxy.settings import Settings
from tests.conftest import FakeClock

__all__ = ["InFlight", "ReserveRig", "reserve_rig"]

# 1 micro-dollar per input token, 2 per output token.
PRICES = {"test-model": {"input": "1", "output": "2"}}


class InFlight:
    """Counts proxy handlers running; ``idle`` is set whenever none is."""

    def __init__(self) -> None:
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.running += 1
        self.idle.clear()
        try:
            return await handler(request)
        finally:
            self.running -= 1
            if not self.running:
                self.idle.set()


@dataclass
class ReserveRig:
    app: web.Application
    client: aiohttp.ClientSession
    store: SqlStore
    counters: RedisCounterStore
    redis: Redis
    prefix: str
    clock: FakeClock
    user_id: int
    key: str
    inflight: InFlight

    def auth(self, chaos: str, call_id: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "x-chaos": chaos, "x-call-id": call_id}

    async def settled(self) -> None:
        """Every proxy handler returned and every charge is in the counters and the ledger."""
        await self.inflight.idle.wait()
        await self.app[RECORDER].drain()

    async def ledger_micros(self, kind: PeriodKind = PeriodKind.MONTH) -> int:
        rows = await self.store.spend(bounds(kind, self.clock.now()), "user")
        return sum(cost for _, cost, _ in rows)

    async def refresh(self) -> None:
        refresher = Refresher(
            ledger=self.store, counters=self.counters, clock=self.clock, interval_s=10
        )
        await refresher.refresh_once()

    async def raw_reservations(self) -> tuple[int, int]:
        """``(HLEN amounts, ZCARD expiries)`` of the month's reservations, read from Redis."""
        period = bounds(PeriodKind.MONTH, self.clock.now())
        amounts = redis_key(self.prefix, self.user_id, "r", period.key)
        expiries = redis_key(self.prefix, self.user_id, "rx", period.key)
        return int(await self.redis.hlen(amounts)), int(await self.redis.zcard(expiries))


def _settings(tmp_path: Path, upstream_url: str, mode: str, timeout_s: float) -> Settings:
    over: dict[str, Any] = {
        "storage": {
            "sqlite_path": str(tmp_path / "spend.db"),
            "spool_path": str(tmp_path / "spool.jsonl"),
            "ledger_flush_interval_s": 0.05,
        },
        "enforcement": {"mode": mode},
        "upstreams": {
            "openai": {
                "base_url": upstream_url,
                "api_key": "sk-upstream",
                "models": ["test-model"],
                "timeout_s": timeout_s,
            }
        },
        "prices": PRICES,
    }
    return Settings(**over)


async def _seed(store: SqlStore, clock: FakeClock, limit_micros: int) -> tuple[str, int]:
    await store.migrate()
    user = await store.create_user("alice", [], clock.now())
    key = generate_key()
    await store.create_key("alice", hash_key(key), display_prefix(key), None, clock.now())
    await store.set_limit_config(LimitConfig(enabled=True, period=PeriodKind.MONTH))
    await store.set_user_limit("alice", limit_micros)
    return key, user.id


@asynccontextmanager
async def reserve_rig(
    *,
    tmp_path: Path,
    redis_url: str,
    prefix: str,
    upstream_url: str,
    mode: str,
    limit_micros: int,
    timeout_s: float = 600.0,
) -> AsyncIterator[ReserveRig]:
    """A started proxy (mode ``check`` or ``reserve``); its Redis keys are deleted at the end."""
    clock = FakeClock()  # frozen: a reservation can never expire, so a leak cannot hide
    settings = _settings(tmp_path, upstream_url, mode, timeout_s)
    async with AsyncExitStack() as stack:
        store = await SqlStore.connect(settings.storage.effective_database_url)
        stack.push_async_callback(store.close)
        key, user_id = await _seed(store, clock, limit_micros)
        redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        stack.push_async_callback(_delete_keys, redis, prefix)
        # A pool larger than the test's concurrency: a pool wait past its timeout is a
        # StoreTimeout, and on_store_error="allow" would then admit without a reservation.
        counters = RedisCounterStore.from_url(
            redis_url, clock=clock, prefix=prefix, max_connections=256
        )
        stack.push_async_callback(counters.close)
        prices = load_price_table(price_overrides(settings))
        app = create_app(settings, clock=clock, counters=counters, prices=prices)
        inflight = InFlight()
        app.middlewares.append(inflight.middleware)
        # As ``spend-proxy serve`` runs it: handlers are NOT cancelled when their client goes
        # away (aiohttp's TestServer cancels them; tests/proxy/test_reserve.py covers that).
        runner = web.AppRunner(app, handler_cancellation=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        client = aiohttp.ClientSession(base_url=f"http://{host}:{port}")
        stack.push_async_callback(client.close)
        yield ReserveRig(app, client, store, counters, redis, prefix, clock, user_id, key, inflight)


async def _delete_keys(redis: Redis, prefix: str) -> None:
    """This test's keys only: the shared Redis is never flushed."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await redis.delete(*keys)
