"""Fixtures of the integration tests: real processes on real Redis and PostgreSQL.

- ``redis_server``: this test's own ``redis-server`` (free to FLUSHALL), stopped afterwards.
- ``pg_cluster``: this test's own PostgreSQL cluster (free to stop), deleted afterwards.
- ``upstream``: the fake upstream (``upstream.py``) served on loopback in the test's loop.
- ``deploy(database_url, ...)``: accounts plus N ``spend-proxy serve`` replicas; every replica
  gets SIGTERM at teardown and must exit 0 (SPEC §8 inv. 4).

A missing ``redis-server`` or PostgreSQL binary skips on a developer's machine and fails in CI
(``tests.conftest._unavailable``), like the shared services.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from tests.conftest import _unavailable
from tests.integration.deployment import Deployment, Options, create_accounts, write_config
from tests.integration.processes import log_tail
from tests.integration.services import PostgresCluster, RedisServer, pg_bin_dir
from tests.integration.upstream import UsageUpstream

USERS = ("ada", "bob", "cy", "dee", "eve", "fay")

Deploy = Callable[..., Awaitable[Deployment]]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server", FileNotFoundError("redis-server is not on PATH"))
    server = RedisServer()
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        server.stop()
        _unavailable("a throwaway redis-server", exc)
    yield server
    server.stop()


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries", FileNotFoundError("initdb/pg_ctl not found"))
        raise AssertionError("unreachable")  # _unavailable skips or fails
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.init()
        cluster.start()
    except (OSError, RuntimeError) as exc:
        cluster.destroy()
        _unavailable("a throwaway PostgreSQL cluster", exc)
    yield cluster
    cluster.destroy()


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> UsageUpstream:
    fake = UsageUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    return fake


@pytest.fixture
async def deploy(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer, upstream: UsageUpstream
) -> AsyncIterator[Deploy]:
    """``deploy(database_url=postgres_url, ...)``. A database other than the default fresh one
    on the shared server must come from a fixture set up *before* this one (listed first in the
    test's arguments), so that it is torn down after the replicas stopped."""
    made: list[Deployment] = []

    async def make(
        database_url: str = postgres_url,
        *,
        users: Sequence[str] = USERS,
        replicas: int = 2,
        options: Options | None = None,
    ) -> Deployment:
        options = options or Options()
        config = tmp_path / "spend-proxy.toml"
        write_config(
            config,
            database_url=database_url,
            redis_url=redis_server.url,
            upstream_url=upstream.url,
            options=options,
        )
        accounts = await create_accounts(database_url, users)
        deployment = Deployment(
            tmp_path, config, database_url, redis_server.url, upstream, accounts, options
        )
        made.append(deployment)
        for _ in range(replicas):
            deployment.add_replica()
        for proxy in deployment.proxies:
            await proxy.wait_ready()
        return deployment

    yield make
    proxies = [proxy for deployment in made for proxy in deployment.proxies]
    codes = await asyncio.gather(*(proxy.stop() for proxy in proxies))
    for proxy in proxies:
        print(f"--- {proxy.name} log (tail) ---\n{log_tail(proxy.log)}")
    failed = {proxy.name: code for proxy, code in zip(proxies, codes, strict=True) if code != 0}
    assert not failed, f"replicas did not exit 0 on SIGTERM: {failed}"
