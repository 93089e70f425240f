"""The three books the integration tests balance (SPEC §8 invariants 1 and 2).

1. **Upstream**: the usage blocks the fake upstream reported, priced here with the same
   ``PriceTable`` the proxies use (``limits.pricing``): what each call should cost.
2. **Ledger**: the rows in PostgreSQL, read with plain SQL (asyncpg), not through the store.
3. **Counters**: the per-user per-period counters in Redis, read through ``RedisCounterStore``.

:func:`assert_balanced` checks, for every user and every current period (day, week, month):
counter == ledger sum == sum of priced upstream usages, to the micro-dollar; and one ledger row
per successful call, request ids unique, each row's tokens and cost those of its call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from limits import PriceTable, Usage, cost_micros
from limits.periods import Period, PeriodKind, bounds
from limits.store.clock import SystemClock
from limits.store.redis import RedisCounterStore
from tests.integration.load import Outcome
from tests.integration.upstream import UsageUpstream

__all__ = [
    "Books",
    "LedgerRow",
    "assert_balanced",
    "counters",
    "current_periods",
    "expected_costs",
    "ledger_rows",
    "ledger_sums",
    "wait_converged",
    "wait_rows",
]

_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class LedgerRow:
    request_id: str
    user_id: int
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_micros: int
    estimated: bool
    charged_at: datetime


async def ledger_rows(database_url: str) -> list[LedgerRow]:
    """Every ledger row, straight from PostgreSQL."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        records = await conn.fetch(
            "SELECT request_id, user_id, model, input_tokens, output_tokens, cache_read_tokens,"
            " cost_micros, estimated, charged_at FROM ledger ORDER BY id"
        )
    finally:
        await conn.close()
    return [LedgerRow(*record) for record in records]


def current_periods(at: datetime | None = None) -> list[Period]:
    at = at or datetime.now(UTC)
    return [bounds(kind, at) for kind in PeriodKind]


async def counters(
    redis_url: str, user_ids: Iterable[int], periods: Sequence[Period]
) -> dict[tuple[int, Period], int]:
    """``(user, period) -> spent micros`` as Redis holds them (live reservations excluded)."""
    store = RedisCounterStore.from_url(redis_url, clock=SystemClock(), socket_timeout_s=5.0)
    try:
        return {
            (user_id, period): (await store.read(user_id, period))[0]
            for user_id in user_ids
            for period in periods
        }
    finally:
        await store.close()


def ledger_sums(
    rows: Iterable[LedgerRow], user_ids: Iterable[int], periods: Sequence[Period]
) -> dict[tuple[int, Period], int]:
    sums = {(user_id, period): 0 for user_id in user_ids for period in periods}
    for row in rows:
        for period in periods:
            if (row.user_id, period) in sums and period.start_at <= row.charged_at < period.end_at:
                sums[row.user_id, period] += row.cost_micros
    return sums


def expected_costs(
    outcomes: Iterable[Outcome], upstream: UsageUpstream, prices: PriceTable
) -> dict[str, tuple[Usage, int]]:
    """Ledger request id -> the usage the upstream reported for that call, and its cost."""
    costs: dict[str, tuple[Usage, int]] = {}
    for outcome in outcomes:
        reported = upstream.reported[outcome.call.call_id]
        price = prices.lookup(outcome.call.model, reported.reported_model)
        usage = reported.tokens.usage()
        assert outcome.ledger_id is not None
        costs[outcome.ledger_id] = (usage, cost_micros(usage, price))
    return costs


@dataclass(frozen=True, slots=True)
class Books:
    rows: int
    total_micros: int
    per_user_month: Mapping[int, int]


async def wait_rows(database_url: str, count: int, timeout_s: float) -> float:
    """Poll until the ledger holds at least ``count`` rows; the seconds it took."""
    started = time.monotonic()
    found = -1
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        while time.monotonic() - started < timeout_s:
            found = await conn.fetchval("SELECT count(*) FROM ledger")
            if found >= count:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"ledger has {found} rows, expected {count}, after {timeout_s} s")


async def wait_converged(
    database_url: str, redis_url: str, user_ids: Sequence[int], timeout_s: float
) -> float:
    """Poll until every counter equals its ledger sum; the seconds it took."""
    started = time.monotonic()
    diff: dict[tuple[int, Period], tuple[int, int]] = {}
    while time.monotonic() - started < timeout_s:
        periods = current_periods()
        sums = ledger_sums(await ledger_rows(database_url), user_ids, periods)
        live = await counters(redis_url, user_ids, periods)
        diff = {key: (live[key], sums[key]) for key in sums if live[key] != sums[key]}
        if not diff:
            return time.monotonic() - started
        await asyncio.sleep(_POLL_S)
    raise AssertionError(f"counters != ledger after {timeout_s} s: (counter, ledger) {diff}")


async def assert_balanced(
    database_url: str,
    redis_url: str,
    user_ids: Mapping[str, int],
    successes: Sequence[Outcome],
    upstream: UsageUpstream,
    prices: PriceTable,
) -> Books:
    """Invariants 1 and 2 (module docstring), once traffic stopped and counters converged."""
    assert not upstream.duplicates, f"the upstream saw calls twice: {upstream.duplicates[:5]}"
    rows = await ledger_rows(database_url)
    ids = [row.request_id for row in rows]
    repeated = [rid for rid, n in Counter(ids).items() if n > 1]
    assert not repeated, f"request ids in the ledger more than once: {repeated[:5]}"
    answered = {outcome.ledger_id or "" for outcome in successes}
    assert "" not in answered, "a successful call without x-spend-request-id"
    assert len(answered) == len(successes), "two successful calls share a request id"
    assert set(ids) == answered, (
        f"{len(rows)} ledger rows for {len(successes)} successful calls: "
        f"missing {sorted(answered - set(ids))[:5]}, unexpected {sorted(set(ids) - answered)[:5]}"
    )
    expected = expected_costs(successes, upstream, prices)
    owner = {outcome.ledger_id: user_ids[outcome.call.user] for outcome in successes}
    for row in rows:
        usage, cost = expected[row.request_id]
        tokens = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens)
        assert not row.estimated, f"row {row.request_id} is estimated"
        assert row.user_id == owner[row.request_id], f"row {row.request_id} of the wrong user"
        assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == tokens, row
        assert row.cost_micros == cost, f"row {row.request_id}: {row.cost_micros} != {cost}"
    periods = current_periods()
    ids_by_user = sorted(user_ids.values())
    ledger = ledger_sums(rows, ids_by_user, periods)
    repriced = [replace(row, cost_micros=expected[row.request_id][1]) for row in rows]
    priced = ledger_sums(repriced, ids_by_user, periods)
    live = await counters(redis_url, ids_by_user, periods)
    for key in ledger:
        assert live[key] == ledger[key] == priced[key], (
            f"user {key[0]} {key[1].kind.value}: counter {live[key]}, ledger {ledger[key]}, "
            f"upstream usage priced {priced[key]}"
        )
    month = bounds(PeriodKind.MONTH, datetime.now(UTC))
    return Books(
        rows=len(rows),
        total_micros=sum(cost for _, cost in expected.values()),
        per_user_month={uid: ledger[uid, month] for uid in ids_by_user},
    )
