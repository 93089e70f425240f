"""``serve --workers 2`` on real PostgreSQL and Redis: every scrape, whichever worker answers it,
reports the whole server's numbers (prometheus-client's multiprocess mode), and the metrics
directory is gone after a clean SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
from pytest_aiohttp import AiohttpServer

from limits import PeriodKind, bounds
from limits.store.sql import SqlStore
from tests.conftest import FakeClock
from tests.proxy.conftest import seed, unused_port_url
from tests.proxy.fake_upstream import FakeUpstream
from tests.proxy.scrape import Scrape

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

CALLS = 8
CALL_MICROS = 44  # gpt-4o-mini at litellm's price, for the fake upstream's usage
CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _config(tmp_path: Path, port: int, database_url: str, redis_url: str, upstream: str) -> Path:
    config = tmp_path / "spend-proxy.toml"
    config.write_text(
        f"[server]\nport = {port}\nworkers = 2\nshutdown_timeout_s = 10\n"
        f'[storage]\ndatabase_url = "{database_url}"\nredis_url = "{redis_url}"\n'
        f'spool_path = "{tmp_path / "spool"}"\nledger_flush_interval_s = 0.05\n'
        f'[upstreams.fake]\nbase_url = "{upstream}"\nmodels = ["gpt-4o-mini"]\n'
    )
    return config


async def _fresh(method: str, url: str, **kwargs: object) -> tuple[int, bytes]:
    """One request on a new connection, so the kernel may pick either worker (SO_REUSEPORT)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, url, **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, await response.read()


def _log_lines(path: Path) -> list[dict[str, object]]:
    complete = path.read_bytes().rpartition(b"\n")[0]  # a line being written is not parsed yet
    return [orjson.loads(line) for line in complete.splitlines()]


async def _wait_ready(base: str, log_path: Path) -> None:
    """Until both workers listen (each logs aiohttp's "Running on") and one answers /readyz."""
    for _ in range(300):
        running = {line["pid"] for line in _log_lines(log_path) if "Running on" in str(line["msg"])}
        try:
            if len(running) == 2 and (await _fresh("GET", base + "/readyz"))[0] == 200:
                return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the workers did not become ready")


async def _ledger(database_url: str) -> tuple[int, int]:
    store = await SqlStore.connect(database_url)
    try:
        rows = await store.spend(bounds(PeriodKind.MONTH, datetime.now(UTC)), "user")
    finally:
        await store.close()
    return next(((cost, calls) for name, cost, calls in rows if name == "alice"), (0, 0))


async def _scrape(base: str) -> Scrape:
    status, body = await _fresh("GET", base + "/metrics")
    assert status == 200
    return Scrape(body.decode())


async def _settled_scrape(base: str, database_url: str) -> Scrape:
    """A scrape after every worker published its ledger numbers (at most 1 s old)."""
    for _ in range(100):
        metrics = await _scrape(base)
        if metrics.value("spend_proxy_ledger_rows_written_total") == CALLS:
            assert await _ledger(database_url) == (CALLS * CALL_MICROS, CALLS)
            return metrics
        await asyncio.sleep(0.1)
    raise AssertionError("the ledger rows were not all published")


def _assert_whole_server(metrics: Scrape) -> None:
    labels = {"route": CHAT, "status": "200", "model": "gpt-4o-mini"}
    assert metrics.value("spend_proxy_requests_total", **labels) == CALLS
    spend = metrics.value("spend_proxy_spend_micros_total", model="gpt-4o-mini")
    assert spend == CALLS * CALL_MICROS
    latency = metrics.value("spend_proxy_upstream_latency_seconds_count", upstream="fake")
    assert latency == CALLS
    assert metrics.value("spend_proxy_ledger_rows_written_total") == CALLS
    assert metrics.value("spend_proxy_ledger_queue_depth") == 0
    assert metrics.value("spend_proxy_reservations_in_flight") == 0


async def _seeded(database_url: str, clock: FakeClock) -> str:
    """A migrated database with user alice: her key."""
    store = await SqlStore.connect(database_url)
    try:
        await store.migrate()
        key, _ = await seed(store, clock)
    finally:
        await store.close()
    return key


async def test_every_scrape_sums_all_workers(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    clock: FakeClock,
    postgres_url: str,
    redis_url: str,
) -> None:
    key = await _seeded(postgres_url, clock)
    server = await aiohttp_server(FakeUpstream().app())
    port = int(unused_port_url().rsplit(":", 1)[1].split("/")[0])
    redis_db = redis_url.rsplit("/", 1)[0] + "/9"  # away from the other tests' keys
    config = _config(tmp_path, port, postgres_url, redis_db, str(server.make_url("/v1")))
    tmp = tmp_path / "tmp"  # where the server makes its metrics directory
    tmp.mkdir()
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "proxy", "serve", "--config", str(config)),
            env={"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin"},
            stderr=log,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base, log_path)
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(CALLS):
            answer = await _fresh("POST", base + CHAT, data=orjson.dumps(BODY), headers=headers)
            assert answer[0] == 200
        await _settled_scrape(base, postgres_url)
        for _ in range(6):  # each on a new connection: either worker may answer
            _assert_whole_server(await _scrape(base))
        assert len(list(tmp.iterdir())) == 1  # the metrics directory, while serving
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert list(tmp.iterdir()) == []  # removed on exit
    served = {line["pid"] for line in _log_lines(log_path) if line["logger"] == "proxy.access"}
    assert len(served) == 2  # both workers answered: the sums above span processes
