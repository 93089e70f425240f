"""Fixtures of the fault suite: the proxy harness of ``tests/proxy`` (``start_proxy`` on an
embedded SQLite ledger in front of the fake upstream), a misbehaving upstream
(``raw_upstream.py``), and this test's own ``redis-server`` (free to kill and restart; the
shared Redis on 6379 is never touched).

``blockbuster`` is ``tests/proxy``'s, except that it lets redis-py read its own version from the
package metadata (``redis.utils.get_lib_version``, an ``os.stat`` on each new connection): a
third-party call these tests cannot change, and that only shows when Redis reconnects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from blockbuster import BlockBuster
from pytest_aiohttp import AiohttpServer

from tests.faults.raw_upstream import RawUpstream
from tests.integration.conftest import redis_server
from tests.proxy.conftest import WATCHED_MODULES, price_table, proxy, start_proxy, upstream

__all__ = [
    "blockbuster",
    "price_table",
    "proxy",
    "raw_upstream",
    "redis_server",
    "start_proxy",
    "upstream",
]


@pytest.fixture
async def raw_upstream(aiohttp_server: AiohttpServer) -> AsyncIterator[RawUpstream]:
    fake = RawUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    yield fake
    fake.release.set()


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    detector = BlockBuster(WATCHED_MODULES)
    for function in detector.functions.values():
        function.can_block_functions.append(("redis/utils.py", {"get_lib_version"}))
    detector.activate()
    yield detector
    detector.deactivate()
