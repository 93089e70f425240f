"""``GET /metrics`` after known traffic: exact counter values, labels, and service gauges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest

from limits import PriceTable, StoreUnavailable
from limits.periods import Period
from limits.ports import Charge
from limits.store.memory import MemoryCounterStore
from limits.store.sql import SqlStore
from proxy.access import Access
from proxy.app import RECORDER, create_app
from proxy.metrics import MODEL_LABELS_MAX, Metrics
from tests.conftest import FakeClock
from tests.limits.fakes import FakeLedger
from tests.proxy.conftest import (
    AiohttpClient,
    Proxy,
    StartProxy,
    make_settings,
    seed,
    start_with_flaky_directory,
)
from tests.proxy.fake_upstream import FakeUpstream
from tests.proxy.scrape import Scrape

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
REQUESTS = "spend_proxy_requests_total"
STORE_ERRORS = "spend_proxy_store_errors_total"


async def post(client: TestClient[web.Request, web.Application], key: str, **over: Any) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with client.post(CHAT, json={**BODY, **over}, headers=headers) as response:
        await response.read()
        return response.status


async def scrape(client: TestClient[web.Request, web.Application]) -> Scrape:
    async with client.get("/metrics") as response:  # no credentials: like /healthz
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(await response.text())


async def test_metrics_count_known_traffic_exactly(proxy: Proxy) -> None:
    await proxy.set_limit(500)  # alice's own override; each call costs 190 micros
    assert await post(proxy.client, proxy.key) == 200
    assert await post(proxy.client, proxy.key, stream=True) == 200
    proxy.upstream.status = 500
    assert await post(proxy.client, proxy.key) == 500  # relayed, not charged
    proxy.upstream.status = 200
    assert await post(proxy.client, proxy.key) == 200
    await proxy.drain()
    assert await post(proxy.client, proxy.key) == 429  # 570 spent >= 500
    cost_micros, calls = await proxy.ledger()
    assert (cost_micros, calls) == (570, 3)

    metrics = await scrape(proxy.client)
    for status, count in (("200", 3), ("500", 1), ("429", 1)):
        assert metrics.value(REQUESTS, route=CHAT, status=status, model="test-model") == count
    assert metrics.total(REQUESTS, route=CHAT) == 5
    assert metrics.value("spend_proxy_spend_micros_total", model="test-model") == cost_micros
    assert metrics.value("spend_proxy_limit_denials_total", source="user") == 1
    assert metrics.total("spend_proxy_limit_denials_total") == 1
    for histogram in ("spend_proxy_upstream_latency_seconds", "spend_proxy_upstream_ttfb_seconds"):
        assert metrics.value(f"{histogram}_count", upstream="openai") == 4  # the 429 never left
        assert metrics.value(f"{histogram}_sum", upstream="openai") > 0
    assert metrics.value("spend_proxy_ledger_rows_written_total") == 3
    assert metrics.value("spend_proxy_ledger_queue_depth") == 0
    assert metrics.value("spend_proxy_ledger_spooled_rows") == 0
    assert metrics.value("spend_proxy_reservations_in_flight") == 0
    assert metrics.value("spend_proxy_fail_open_admissions_total") == 0
    assert metrics.total(STORE_ERRORS) == 0


async def test_route_label_is_the_pattern_and_model_is_set_once_routed(proxy: Proxy) -> None:
    async with proxy.client.get("/v1/no/such/path", headers=proxy.auth()) as response:
        assert response.status == 404
    assert await post(proxy.client, proxy.key, model="not-routed-anywhere") == 404
    async with proxy.client.get("/admin/v1/users/bob") as response:
        assert response.status in (401, 503)
        admin_status = str(response.status)
    metrics = await scrape(proxy.client)
    assert metrics.value(REQUESTS, route="unmatched", status="404", model="") == 1
    assert metrics.value(REQUESTS, route=CHAT, status="404", model="") == 1
    admin = {"route": "/admin/v1/users/{user}", "status": admin_status, "model": ""}
    assert metrics.value(REQUESTS, **admin) == 1
    labels = {dict(labels).get("route") for name, labels in metrics.samples() if name == REQUESTS}
    assert "/v1/no/such/path" not in labels
    assert "/admin/v1/users/bob" not in labels


async def test_auth_store_errors_are_counted_by_store_and_operation(
    start_proxy: StartProxy,
) -> None:
    proxy, flaky = await start_with_flaky_directory(start_proxy)
    assert await post(proxy.client, proxy.key) == 200  # alice's key is verified, and cached
    flaky.down = True
    proxy.clock.advance(5)  # the directory cache polls the database again: it fails too
    assert await post(proxy.client, proxy.key) == 200  # a verified key keeps working
    unknown_key = "sk-sp-" + "x" * 40  # not cached: the lookup must reach the database
    assert await post(proxy.client, unknown_key) == 503
    metrics = await scrape(proxy.client)
    assert metrics.value(STORE_ERRORS, store="database", operation="key_lookup") == 1
    assert metrics.value(STORE_ERRORS, store="database", operation="revision_poll") >= 1
    assert metrics.value(REQUESTS, route=CHAT, status="503", model="") == 1


class FlakyCounters(MemoryCounterStore):
    """In-process counters that can be switched to failing (``down``)."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("counters down (fake)")

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        self._check()
        return await super().read(user_id, period)

    async def read_spent(self, user_id: int, period: Period) -> int:
        self._check()
        return await super().read_spent(user_id, period)

    async def charge(self, charges: Sequence[Charge]) -> None:
        self._check()
        await super().charge(charges)


Client = TestClient[web.Request, web.Application]
StartCustom = Callable[..., Awaitable[tuple[Client, str]]]


@pytest.fixture
async def start_custom(
    tmp_path: Path,
    upstream: FakeUpstream,
    clock: FakeClock,
    price_table: PriceTable,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[StartCustom]:
    """A proxy on injected counters and/or ledger: ``(client, alice's key)``."""
    stores: list[SqlStore] = []

    async def start(**parts: Any) -> tuple[Client, str]:
        over = parts.pop("settings", {})
        settings = make_settings(tmp_path, upstream.url, **over)
        store = await SqlStore.connect(settings.storage.effective_database_url)
        stores.append(store)
        await store.migrate()
        key, _ = await seed(store, clock)
        if "ledger" in parts:
            parts["directory"] = store
        app = create_app(settings, clock=clock, prices=price_table, **parts)
        return await aiohttp_client(app), key

    yield start
    for store in stores:
        await store.close()


async def test_fail_open_admissions_and_counter_failures_are_counted(
    start_custom: StartCustom, clock: FakeClock
) -> None:
    counters = FlakyCounters(clock)
    client, key = await start_custom(
        counters=counters, settings={"enforcement": {"spent_cache_s": 0}}
    )
    counters.down = True
    assert await post(client, key) == 200  # on_store_error = "allow": fail-open
    await client.app[RECORDER].drain()
    metrics = await scrape(client)
    assert metrics.value("spend_proxy_fail_open_admissions_total") == 1
    assert metrics.value(STORE_ERRORS, store="counters", operation="admit") == 1
    assert metrics.value(STORE_ERRORS, store="counters", operation="ledger_charge") >= 1
    assert metrics.value("spend_proxy_spend_micros_total", model="test-model") == 190


async def test_ledger_gauges_are_read_from_the_recorder_at_scrape_time(
    start_custom: StartCustom,
) -> None:
    ledger = FakeLedger(fail=StoreUnavailable("database down (fake)"))
    client, key = await start_custom(ledger=ledger, settings={"storage": {"ledger_queue_max": 1}})
    assert [await post(client, key), await post(client, key)] == [200, 200]
    insert_errors = {"store": "database", "operation": "ledger_insert"}
    for _ in range(250):  # until the writer spilled the row over queue_max and tried the rest
        metrics = await scrape(client)
        spooled = metrics.value("spend_proxy_ledger_spooled_rows")
        if spooled >= 1 and metrics.value(STORE_ERRORS, **insert_errors) >= 1:
            break
        await asyncio.sleep(0.02)
    assert metrics.value("spend_proxy_ledger_queue_depth") == 1  # queue_max: the rest spooled
    assert metrics.value("spend_proxy_ledger_spooled_rows") == 1
    assert metrics.value(STORE_ERRORS, **insert_errors) >= 1
    assert metrics.value("spend_proxy_ledger_rows_written_total") == 0
    ledger.fail = None  # the database is back
    await client.app[RECORDER].drain()
    metrics = await scrape(client)
    assert metrics.value("spend_proxy_ledger_queue_depth") == 0
    assert metrics.value("spend_proxy_ledger_spooled_rows") == 0
    assert metrics.value("spend_proxy_ledger_rows_written_total") == 2
    assert len(ledger.rows) == 2


async def test_reservations_in_flight_rise_while_a_call_runs(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(enforcement={"mode": "reserve"})
    await proxy.set_limit(10**9)
    proxy.upstream.hang = True
    call = asyncio.create_task(post(proxy.client, proxy.key))
    for _ in range(500):  # until the call reached the upstream (and waits there)
        if proxy.upstream.seen:
            break
        await asyncio.sleep(0.01)
    assert (await scrape(proxy.client)).value("spend_proxy_reservations_in_flight") == 1
    proxy.upstream.released.set()
    assert await call == 200
    assert (await scrape(proxy.client)).value("spend_proxy_reservations_in_flight") == 0


def test_model_labels_are_capped_per_process() -> None:
    metrics = Metrics()
    for n in range(MODEL_LABELS_MAX + 50):
        access = Access(model=f"model-{n}", upstream="openai", cost_micros=1)
        metrics.observe(CHAT, 200, access, end=0.0)
    families = {family.name: family for family in metrics.registry.collect()}
    models = {s.labels["model"] for s in families["spend_proxy_requests"].samples}
    assert len(models) == MODEL_LABELS_MAX + 1
    assert "other" in models
    spend = families["spend_proxy_spend_micros"].samples
    assert sum(s.value for s in spend if s.name.endswith("_total")) == MODEL_LABELS_MAX + 50


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:1/v1")
    first, second = Metrics(), Metrics()
    first.observe(CHAT, 200, Access(model="m"), end=0.0)
    assert first.registry is not second.registry
    assert "spend_proxy_requests_total" in Scrape(_text(first)).names()
    assert Scrape(_text(second)).total(REQUESTS) == 0
    assert create_app(settings) is not create_app(settings)  # no global registry collision


def _text(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()
