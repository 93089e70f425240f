"""Fixtures of the security and abuse suite: the proxy harness of ``tests/proxy`` and a blank
upstream (``blank_upstream.py``) that answers anything without usage and never fails itself,
so that any error, 500 or charge seen in these tests is the proxy's own.
"""

from __future__ import annotations

import pytest
from pytest_aiohttp import AiohttpServer

from tests.proxy.conftest import blockbuster, price_table, proxy, start_proxy, upstream
from tests.security.blank_upstream import BlankUpstream

__all__ = [
    "blank_upstream",
    "blockbuster",
    "price_table",
    "proxy",
    "start_proxy",
    "upstream",
]

ADMIN_TOKEN = "adm-" + "T0k3n" * 8


@pytest.fixture
async def blank_upstream(aiohttp_server: AiohttpServer) -> BlankUpstream:
    fake = BlankUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    return fake
