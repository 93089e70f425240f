"""Two replicas through a lost Redis and a stopped PostgreSQL (SPEC §8 inv. 1-3).

1. FLUSHALL (and SCRIPT FLUSH) of the counters' Redis during traffic: calls keep succeeding; an
   idle user's counter is back to its ledger total within one refresh interval; after traffic
   every counter equals the ledger, no ledger row is lost.
2. PostgreSQL stopped for 30 s during traffic: calls keep succeeding (keys and limits come from
   the directory cache, rows wait in memory, then in the spool); after the restart every row
   is written exactly once and the counters equal the ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence

import pytest
import redis.asyncio

from tests.integration.books import (
    assert_balanced,
    counters,
    current_periods,
    ledger_rows,
    ledger_sums,
    wait_converged,
    wait_rows,
)
from tests.integration.conftest import Deploy
from tests.integration.deployment import Deployment, Options
from tests.integration.load import Call, Outcome, drive, mixed_calls, report
from tests.integration.services import PostgresCluster

OUTAGE_S = 30.0


def _endless(users: Sequence[str], prefix: str) -> Iterator[Call]:
    """Mixed calls, alternating replicas, without end (callers stop it)."""
    for batch in itertools.count():
        yield from mixed_calls(users, 2, 500, prefix=f"{prefix}{batch}-", seed=batch)


class Traffic:
    """Background traffic until :meth:`stop` (at the latest when the ``async with`` ends, so a
    failing test leaves no task behind); every outcome is kept."""

    def __init__(self, deployment: Deployment, users: Sequence[str], *, concurrency: int) -> None:
        self.outcomes: list[Outcome] = []
        self._running = True
        calls = itertools.takewhile(lambda _: self._running, _endless(users, "bg"))
        self._task = asyncio.create_task(
            drive(
                deployment.urls,
                deployment.keys,
                calls,
                concurrency=concurrency,
                on_outcome=self.outcomes.append,
            )
        )

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.finished_at < end]

    async def stop(self) -> list[Outcome]:
        """Send no new call, wait (bounded) for those in flight; every outcome."""
        self._running = False
        async with asyncio.timeout(60):
            await self._task
        return self.outcomes

    async def __aenter__(self) -> Traffic:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def _idle_user_restored(
    deployment: Deployment, user_id: int, flushed_at: float, timeout_s: float
) -> float:
    """Seconds from the flush until the idle user's counters equal the ledger again."""
    periods = current_periods()
    expected = ledger_sums(await ledger_rows(deployment.database_url), [user_id], periods)
    assert all(total > 0 for total in expected.values())
    while time.monotonic() - flushed_at < timeout_s:
        if await counters(deployment.redis_url, [user_id], periods) == expected:
            return time.monotonic() - flushed_at
        await asyncio.sleep(0.02)
    raise AssertionError(f"the idle user's counters were not restored within {timeout_s} s")


async def test_flushall_during_traffic_converges_within_one_refresh(deploy: Deploy) -> None:
    deployment = await deploy()
    idle, busy = "ada", [name for name in deployment.accounts if name != "ada"]
    warmup = mixed_calls(list(deployment.accounts), 2, 200, prefix="pre-", seed=3)
    before = await drive(deployment.urls, deployment.keys, warmup, concurrency=16)
    assert all(o.status == 200 and o.complete for o in before)
    await wait_rows(deployment.database_url, len(before), timeout_s=10)

    options = deployment.options
    async with Traffic(deployment, busy, concurrency=16) as traffic:
        await asyncio.sleep(0.5)  # traffic under way
        client = redis.asyncio.Redis.from_url(deployment.redis_url)
        try:
            await client.flushall()
            await client.script_flush()  # as a restarted, empty Redis: scripts gone too
            flushed_at = time.monotonic()
        finally:
            await client.aclose()
        restored_s = await _idle_user_restored(
            deployment,
            deployment.user_ids[idle],
            flushed_at,
            timeout_s=options.refresh_interval_s + options.ledger_flush_interval_s + 1.0,
        )
        # Traffic goes on through at least two refreshes after the flush.
        await asyncio.sleep(
            max(0.0, flushed_at + 2 * options.refresh_interval_s - time.monotonic())
        )
        outcomes = await traffic.stop()
        stopped_at = time.monotonic()

    bad = [o for o in outcomes if o.status != 200 or not o.complete]
    assert not bad, f"{len(bad)} calls failed, e.g. {bad[:3]}"
    after_flush = len(traffic.between(flushed_at, stopped_at))
    assert after_flush > 0
    successes = before + outcomes
    flush_s = await wait_rows(deployment.database_url, len(successes), timeout_s=10)
    user_ids = sorted(deployment.user_ids.values())
    converge_s = await wait_converged(
        deployment.database_url,
        deployment.redis_url,
        user_ids,
        timeout_s=options.refresh_interval_s + options.ledger_flush_interval_s + 1.0,
    )
    books = await assert_balanced(
        deployment.database_url,
        deployment.redis_url,
        deployment.user_ids,
        successes,
        deployment.upstream,
        deployment.prices(),
    )
    assert books.rows == len(successes)
    report(
        "flushall",
        calls=len(successes),
        calls_after_flush=after_flush,
        rows=books.rows,
        idle_user_restored_s=f"{restored_s:.2f}",
        ledger_flush_after_traffic_s=f"{flush_s:.2f}",
        converged_after_traffic_s=f"{flush_s + converge_s:.2f}",
    )


@pytest.mark.slow
@pytest.mark.timeout(240)  # a 30 s outage, then up to 30 s of writer backoff
async def test_postgres_outage_loses_no_row(pg_cluster: PostgresCluster, deploy: Deploy) -> None:
    """``pg_cluster`` comes first: it is torn down after the replicas (see ``deploy``)."""
    options = Options(ledger_queue_max=50)  # small: rows overflow to the spool during the outage
    deployment = await deploy(pg_cluster.admin_url, options=options)
    users = list(deployment.accounts)
    warm = [Call(f"warm-{u}-{t}", t, u, "chat", "test-model") for u in users for t in (0, 1)]
    before = await drive(deployment.urls, deployment.keys, warm, concurrency=4)
    assert all(o.status == 200 for o in before)  # every key and limit cached on both replicas

    async with Traffic(deployment, users, concurrency=4) as traffic:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(pg_cluster.stop)
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)  # the outage itself: nothing to poll for
        await asyncio.to_thread(pg_cluster.start)
        up_at = time.monotonic()
        await asyncio.sleep(1.0)
        outcomes = await traffic.stop()
        stopped_at = time.monotonic()

    bad = [o for o in outcomes if o.status != 200 or not o.complete]
    assert not bad, f"{len(bad)} calls failed, e.g. {bad[:3]}"
    during = traffic.between(down_at, up_at)
    assert len(during) > 100, "traffic stalled while the database was down"
    successes = before + outcomes
    # The writer's retry backoff is capped at 30 s (LedgerRecorder retry_max_s).
    written_s = await wait_rows(deployment.database_url, len(successes), timeout_s=45)
    converge_s = await wait_converged(
        deployment.database_url,
        deployment.redis_url,
        sorted(deployment.user_ids.values()),
        timeout_s=options.refresh_interval_s + options.ledger_flush_interval_s + 1.0,
    )
    books = await assert_balanced(
        deployment.database_url,
        deployment.redis_url,
        deployment.user_ids,
        successes,
        deployment.upstream,
        deployment.prices(),
    )
    assert books.rows == len(successes)
    logs = [proxy.log.read_text(errors="replace") for proxy in deployment.proxies]
    assert any("spooled" in log for log in logs), "rows were expected to overflow to the spool"
    assert all(proxy.spool.stat().st_size == 0 for proxy in deployment.proxies)  # replayed
    report(
        "postgres_outage",
        outage_s=f"{up_at - down_at:.1f}",
        calls=len(successes),
        calls_during_outage=len(during),
        rows=books.rows,
        all_rows_written_after_restart_s=f"{stopped_at - up_at + written_s:.2f}",
        converged_after_rows_s=f"{converge_s:.2f}",
    )
