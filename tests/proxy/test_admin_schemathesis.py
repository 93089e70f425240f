"""Schemathesis over every admin operation: no 500s, and every answer conforms to the document.

The proxy (``create_app``, embedded SQLite) serves on a real loopback port from a background
thread with its own event loop: schemathesis speaks HTTP through ``requests`` and has no
loader for aiohttp apps. Before each operation's test the database gets ``alice`` (key id 1)
in group ``eng`` back, which the document's path examples (``alice``, ``eng``, 1) name, so
every operation reaches its success path and not only 404s.

Bounded for CI: at most ``MAX_EXAMPLES`` generated cases per operation and phase, no deadline.
Each case runs schemathesis' default checks (``not_a_server_error``, status code, content
type, response schema and headers conformance, negative data rejection, positive data
acceptance where it applies, missing auth ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from limits import PriceTable
from limits.admin import AdminService
from limits.errors import AlreadyExists
from proxy.admin import ADMIN, openapi_document
from proxy.app import create_app
from tests.proxy.admin_client import TOKEN
from tests.proxy.conftest import make_settings, unused_port_url

MAX_EXAMPLES = 25

schema = schemathesis.openapi.from_dict(openapi_document())


async def _seed(admin: AdminService) -> None:
    """``alice`` in ``eng`` with a key (id 1 the first time): what the document's examples name.
    Run before each operation's test, since the one before may have deleted them."""
    for create in (lambda: admin.create_group("eng"), lambda: admin.create_user("alice")):
        with contextlib.suppress(AlreadyExists):
            await create()
    await admin.add_member("eng", "alice")
    if not await admin.list_keys("alice"):
        await admin.create_key("alice", "seed")


class BackgroundProxy:
    """The real app on 127.0.0.1:<free port>, run by a thread with its own event loop."""

    def __init__(self, tmp_path: Path, prices: PriceTable) -> None:
        self.settings = make_settings(tmp_path, unused_port_url(), admin_token=TOKEN)
        self.prices = prices
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="admin-api-server", daemon=True)
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.failure: BaseException | None = None

    async def _start(self) -> None:
        self.app = create_app(self.settings, prices=self.prices)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # handed to the test thread by __enter__
            self.failure = exc
            self.loop.close()
            return
        finally:
            self.started.set()
        self.loop.run_forever()
        assert self.runner is not None
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def seed(self) -> None:
        """Run :func:`_seed` on the server's loop, with the server's own ``AdminService``."""
        assert self.app is not None
        future = asyncio.run_coroutine_threadsafe(_seed(self.app[ADMIN]), self.loop)
        future.result(timeout=30)

    def __enter__(self) -> BackgroundProxy:
        self.thread.start()
        assert self.started.wait(timeout=60), "the admin API server did not start"
        if self.failure is not None:
            raise self.failure
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, price_table: PriceTable
) -> Iterator[BackgroundProxy]:
    with BackgroundProxy(tmp_path_factory.mktemp("admin-api"), price_table) as running:
        yield running


@pytest.fixture
def base_url(server: BackgroundProxy) -> str:
    server.seed()
    return f"http://127.0.0.1:{server.port}"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # base_url reseeds once per operation, not per example: that is the intent.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_admin_api_conforms_to_its_document(case: schemathesis.Case[Any], base_url: str) -> None:
    excluded = [schemathesis.checks.positive_data_acceptance] if _has_float(case.body) else []
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=excluded,
    )


def _has_float(value: object) -> bool:
    """Whether a body holds a JSON float such as ``5.0``.

    JSON Schema counts ``5.0`` as an ``integer``, but the admin API refuses float literals in
    integer fields (money is never a float, SPEC §2): such a body is schema-valid yet answered
    400 naming the field, which schemathesis' positive-data check would report.
    """
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return False
