"""SIGTERM and SIGKILL on a real ``spend-proxy serve`` during steady traffic (SPEC §8 inv. 4, 5).

One replica on this test's own ``redis-server`` and a fresh PostgreSQL database, in front of
the usage-reporting fake upstream (``tests/integration/upstream.py``), with latency so that
calls are in flight when the signal lands.

- SIGTERM: the process exits 0; every call answered 200 (those in flight at the signal
  included) has its ledger row; no call got a 5xx from the proxy.
- SIGKILL: rows still in memory are lost. The test measures how many calls answered 200 before
  the kill are missing from the ledger, and checks it against the documented bound: the calls
  answered in the last flush interval (plus one write pass). The numbers are printed
  (``pytest -s``) and quoted in README "Reliability".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Iterator

import pytest
from pytest_aiohttp import AiohttpServer

from tests.integration.books import ledger_rows
from tests.integration.conftest import USERS, Deploy, deploy
from tests.integration.deployment import Options
from tests.integration.load import Call, Outcome, drive
from tests.integration.upstream import UsageUpstream

__all__ = ["deploy"]

LATENCY_S = 0.2
CONCURRENCY = 16
FLUSH_S = 1.0
WRITE_PASS_S = 0.5  # slack for one write pass (insert round trip) beyond the interval


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> UsageUpstream:
    """The integration suite's upstream (this module overrides the proxy suite's fixture)."""
    fake = UsageUpstream(latency_s=LATENCY_S)
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    return fake


def _endless(prefix: str) -> Iterator[Call]:
    kinds = itertools.cycle(["chat", "chat-stream", "embeddings", "responses"])
    for n in itertools.count():
        kind = next(kinds)
        model = "text-embedding-3-small" if kind == "embeddings" else "gpt-4o-mini"
        yield Call(f"{prefix}{n:06d}", 0, USERS[n % len(USERS)], kind, model)


async def _traffic_until(
    deploy_urls: list[str], keys: dict[str, str], prefix: str, stop: asyncio.Event
) -> list[Outcome]:
    calls = itertools.takewhile(lambda _: not stop.is_set(), _endless(prefix))
    return await drive(deploy_urls, keys, calls, concurrency=CONCURRENCY)


@pytest.mark.slow
async def test_sigterm_during_traffic_drains_flushes_and_exits_0(deploy: Deploy) -> None:
    deployment = await deploy(replicas=1, options=Options(ledger_flush_interval_s=FLUSH_S))
    proxy = deployment.proxies[0]
    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic_until(deployment.urls, deployment.keys, "term-", stop))
    await asyncio.sleep(1.5)
    signalled_at = time.monotonic()
    proxy.signal(signal.SIGTERM)
    code = await proxy.wait_exit(30)
    stop.set()
    outcomes = await asyncio.wait_for(traffic, 30)
    proxy.start()  # the fixture's teardown SIGTERMs it again and wants exit 0
    await proxy.wait_ready()
    assert code == 0
    ok = [o for o in outcomes if o.status == 200]
    assert not [o for o in outcomes if o.status >= 500], "a 5xx during the drain"
    drained = [o for o in ok if o.finished_at > signalled_at]
    assert drained, "no call was in flight at SIGTERM"
    ids = {row.request_id for row in await ledger_rows(deployment.database_url)}
    missing = [o.ledger_id for o in ok if o.ledger_id not in ids]
    print(f"[sigterm] answered={len(ok)} finished_after_signal={len(drained)} missing={missing}")
    assert not missing


@pytest.mark.slow
async def test_sigkill_loses_at_most_one_flush_interval_of_charges(deploy: Deploy) -> None:
    deployment = await deploy(replicas=1, options=Options(ledger_flush_interval_s=FLUSH_S))
    proxy = deployment.proxies[0]
    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic_until(deployment.urls, deployment.keys, "kill-", stop))
    await asyncio.sleep(3.0)
    killed_at = time.monotonic()
    proxy.signal(signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await proxy.wait_exit(10)
    stop.set()
    outcomes = await asyncio.wait_for(traffic, 30)
    proxy.start()
    await proxy.wait_ready()
    ok = [o for o in outcomes if o.status == 200 and o.finished_at <= killed_at]
    ids = {row.request_id for row in await ledger_rows(deployment.database_url)}
    missing = [o for o in ok if o.ledger_id not in ids]
    window = [o for o in ok if o.finished_at > killed_at - FLUSH_S - WRITE_PASS_S]
    rate = len(ok) / 3.0
    print(
        f"[sigkill] flush_interval_s={FLUSH_S} answered_200={len(ok)} rate_per_s={rate:.0f} "
        f"missing={len(missing)} answered_in_last_interval={len(window)}"
    )
    assert len(missing) <= len(window)
    assert {o.ledger_id for o in missing} <= {o.ledger_id for o in window}
