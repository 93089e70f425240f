"""Fakes for the recorder, refresher and directory tests (httpcore ``MockBackend`` style).

Each implements its ``limits.ports`` Protocol structurally (mypy checks it where a test passes
it as the port), records what it is asked, and can be told to fail with a ``StoreError`` or to
hold a call at a gate (an ``asyncio.Event``) so a test can interleave work deterministically.

``FakeCounters`` applies the ``CounterStore`` pending rule exactly (charge adds and marks
pending, committed un-marks, rebase sets ``ledger total + pending in the period``), so the
refresher's convergence can be checked end to end. ``FakeLedger`` is idempotent on
``request_id`` like the SQL store and counts rows offered again after they were stored.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from limits.errors import StoreError
from limits.periods import Period, PeriodKind, bounds
from limits.ports import Charge, ChargeSink, Clock, LedgerEntry, Principal, UserLimits
from limits.scopes import LimitConfig
from limits.store.spool import FileSpool
from limits.usage import Usage

AT = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # the FakeClock's default time

Journal = list[tuple[str, tuple[str, ...]]]


def make_row(
    request_id: str, *, user_id: int = 1, cost_micros: int = 100, at: datetime = AT
) -> tuple[LedgerEntry, Charge]:
    """One charged call: its ledger entry and the charge the enforcer would make of it."""
    entry = LedgerEntry(
        request_id=request_id,
        user_id=user_id,
        model="gpt-test",
        upstream="openai",
        endpoint="/v1/chat/completions",
        usage=Usage(input_tokens=10, output_tokens=5),
        cost_micros=cost_micros,
        estimated=False,
        started_at=at - timedelta(seconds=1),
        charged_at=at,
    )
    return entry, Charge(request_id, user_id, cost_micros, at)


def submit(sink: ChargeSink, *request_ids: str) -> None:
    """Submit one default row per request id."""
    for request_id in request_ids:
        sink.submit(*make_row(request_id))


async def eventually(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Wait (polling every millisecond) until ``condition()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


async def _pass(gate: asyncio.Event | None, fail: StoreError | None) -> None:
    if gate is not None:
        await gate.wait()
    if fail is not None:
        raise fail


@dataclass
class FakeLedger:
    """A ``limits.ports.LedgerStore`` in a dict."""

    journal: Journal = field(default_factory=list)
    rows: dict[str, LedgerEntry] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)  # successful inserts, in order
    attempts: int = 0
    reoffered: int = 0  # rows offered again after they were stored
    extra_user_ids: list[int] = field(default_factory=list)
    fail: StoreError | None = None
    gate: asyncio.Event | None = None

    async def insert(self, entries: Sequence[LedgerEntry]) -> int:
        self.attempts += 1
        await _pass(self.gate, self.fail)
        ids = [entry.request_id for entry in entries]
        self.reoffered += sum(1 for request_id in ids if request_id in self.rows)
        new = [entry for entry in entries if entry.request_id not in self.rows]
        self.rows.update((entry.request_id, entry) for entry in new)
        self.batches.append(ids)
        self.journal.append(("insert", tuple(ids)))
        return len(new)

    async def totals(self, periods: Sequence[Period]) -> dict[int, dict[Period, int]]:
        await _pass(self.gate, self.fail)
        result: dict[int, dict[Period, int]] = {}
        for entry in self.rows.values():
            user = result.setdefault(entry.user_id, dict.fromkeys(periods, 0))
            for period in periods:
                if period.contains(entry.charged_at):
                    user[period] += entry.cost_micros
        return result

    async def user_total(self, user_id: int, period: Period) -> int:
        totals = await self.totals([period])
        return totals.get(user_id, {}).get(period, 0)

    async def user_ids(self) -> list[int]:
        await _pass(None, self.fail)
        return sorted({entry.user_id for entry in self.rows.values()} | set(self.extra_user_ids))


@dataclass
class FakeCounters:
    """A ``limits.ports.CounterStore`` applying the pending rule exactly (no reservations)."""

    clock: Clock
    journal: Journal = field(default_factory=list)
    spent: dict[tuple[int, str], int] = field(default_factory=dict)
    pending: dict[str, Charge] = field(default_factory=dict)
    charged: list[str] = field(default_factory=list)
    committed_ids: list[str] = field(default_factory=list)
    rebased: list[tuple[int, dict[Period, int], float]] = field(default_factory=list)
    lead_calls: list[tuple[str, float]] = field(default_factory=list)
    lead: bool = True
    fail_charge: StoreError | None = None
    fail_committed: StoreError | None = None
    fail_rebase: StoreError | None = None
    gate: asyncio.Event | None = None  # holds charge()

    def value(self, user_id: int, period: Period) -> int:
        return self.spent.get((user_id, period.key), 0)

    def lose_everything(self) -> None:
        """What a restarted or flushed Redis looks like."""
        self.spent.clear()
        self.pending.clear()

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        return self.value(user_id, period), 0

    async def read_spent(self, user_id: int, period: Period) -> int:
        return self.value(user_id, period)

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        spent = self.value(user_id, period)
        return limit_micros is None or spent < limit_micros, spent, 0

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        return None

    async def charge(self, charges: Sequence[Charge]) -> None:
        await _pass(self.gate, self.fail_charge)
        for charge in charges:
            for kind in PeriodKind:
                key = (charge.user_id, bounds(kind, charge.charged_at).key)
                self.spent[key] = self.spent.get(key, 0) + charge.cost_micros
            self.pending[charge.request_id] = charge
            self.charged.append(charge.request_id)
        self.journal.append(("charge", tuple(charge.request_id for charge in charges)))

    async def committed(self, charges: Sequence[Charge]) -> None:
        await _pass(None, self.fail_committed)
        for charge in charges:
            self.pending.pop(charge.request_id, None)
            self.committed_ids.append(charge.request_id)
        self.journal.append(("committed", tuple(charge.request_id for charge in charges)))

    async def rebase(
        self, user_id: int, ledger_totals: Mapping[Period, int], pending_max_age_s: float
    ) -> None:
        await _pass(None, self.fail_rebase)
        self.rebased.append((user_id, dict(ledger_totals), pending_max_age_s))
        cutoff = self.clock.now() - timedelta(seconds=pending_max_age_s)
        self.pending = {
            rid: c
            for rid, c in self.pending.items()
            if c.user_id != user_id or c.charged_at >= cutoff
        }
        mine = [c for c in self.pending.values() if c.user_id == user_id]
        for period, total in ledger_totals.items():
            in_period = sum(c.cost_micros for c in mine if period.contains(c.charged_at))
            self.spent[(user_id, period.key)] = total + in_period

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        self.lead_calls.append((name, ttl_s))
        return self.lead

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class FakeDirectory:
    """A ``limits.ports.Directory`` over plain values; ``revision`` bumps on every change."""

    keys: dict[str, Principal] = field(default_factory=dict)
    config: LimitConfig = field(default_factory=LimitConfig)
    limits: dict[int, UserLimits] = field(default_factory=dict)
    rev: int = 1
    calls: Counter[str] = field(default_factory=Counter)
    fail: StoreError | None = None
    fail_revision: StoreError | None = None
    gate: asyncio.Event | None = None  # holds every lookup except revision()

    def revoke(self, key_hash: str) -> None:
        del self.keys[key_hash]
        self.rev += 1

    async def principal_for_key(self, key_hash: str) -> Principal | None:
        self.calls["principal_for_key"] += 1
        principal = self.keys.get(key_hash)  # read first: a slow answer can be out of date
        await _pass(self.gate, self.fail)
        return principal

    async def limit_config(self) -> LimitConfig:
        self.calls["limit_config"] += 1
        await _pass(self.gate, self.fail)
        return self.config

    async def user_limits(self, user_id: int) -> UserLimits:
        self.calls["user_limits"] += 1
        await _pass(self.gate, self.fail)
        return self.limits.get(user_id, UserLimits(None))

    async def revision(self) -> int:
        self.calls["revision"] += 1
        await _pass(None, self.fail_revision)
        return self.rev


class FlakySpool(FileSpool):
    """A ``FileSpool`` whose appends can be made to fail like a full disk."""

    fail_append: bool = False

    def append(self, entries: Sequence[LedgerEntry]) -> None:
        if self.fail_append:
            raise OSError(28, "No space left on device")
        super().append(entries)
