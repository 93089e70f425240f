"""Fakes for the ports the :class:`limits.enforcer.Enforcer` talks to (httpcore ``MockBackend``).

Each implements its Protocol from ``limits.ports`` structurally (mypy checks that where a test
passes one as the port), records the calls it gets, and can be told to fail with a
``StoreError``. ``FakeCounters`` applies the ``CounterStore`` rules exactly (atomic
reserve-and-check, charges release the reservation they name), so that a state machine over the
enforcer can check the overspend bound; it ignores time (reservations never expire here: the
memory and Redis adapters' own suites test expiry).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from limits.errors import StoreError
from limits.periods import Period
from limits.ports import Charge, LedgerEntry, Principal, UserLimits
from limits.scopes import LimitConfig

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending (the fakes never do); no event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise AssertionError("a fake suspended: fakes must not await")


@dataclass
class FakeDirectory:
    """A ``limits.ports.Directory`` over plain values."""

    config: LimitConfig = field(default_factory=lambda: LimitConfig(enabled=True))
    limits: dict[int, UserLimits] = field(default_factory=dict)
    fail: StoreError | None = None
    user_limits_calls: list[int] = field(default_factory=list)

    async def principal_for_key(self, key_hash: str) -> Principal | None:
        return None

    async def limit_config(self) -> LimitConfig:
        if self.fail is not None:
            raise self.fail
        return self.config

    async def user_limits(self, user_id: int) -> UserLimits:
        self.user_limits_calls.append(user_id)
        if self.fail is not None:
            raise self.fail
        return self.limits.get(user_id, UserLimits(None))

    async def revision(self) -> int:
        return 0


@dataclass
class Hold:
    user_id: int
    period: Period
    amount_micros: int
    ttl_s: float


@dataclass
class FakeCounters:
    """A ``limits.ports.CounterStore`` in dicts, one period per user is enough for the tests.

    ``fail`` makes every counter call raise it; ``verdict`` overrides the admission answer of
    :meth:`reserve` (a store that disagrees with ``decide``), without holding anything when it
    says no.
    """

    spent: dict[int, int] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    fail: StoreError | None = None
    verdict: bool | None = None
    reads: list[tuple[int, Period]] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def reserved(self, user_id: int) -> int:
        return sum(h.amount_micros for h in self.holds.values() if h.user_id == user_id)

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        self._check()
        self.reads.append((user_id, period))
        return self.spent.get(user_id, 0), self.reserved(user_id)

    async def read_spent(self, user_id: int, period: Period) -> int:
        spent, _reserved = await self.read(user_id, period)
        return spent

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        self._check()
        spent, reserved = self.spent.get(user_id, 0), self.reserved(user_id)
        admitted = limit_micros is None or spent + reserved < limit_micros
        if self.verdict is not None:
            admitted = self.verdict
        if admitted:
            self.holds[reservation_id] = Hold(user_id, period, amount_micros, ttl_s)
        return admitted, spent, reserved

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        self._check()
        self.released.append(reservation_id)
        self.holds.pop(reservation_id, None)

    async def charge(self, charges: Sequence[Charge]) -> None:
        self._check()
        for charge in charges:
            self.spent[charge.user_id] = self.spent.get(charge.user_id, 0) + charge.cost_micros
            if charge.reservation_id is not None:
                self.holds.pop(charge.reservation_id, None)

    async def committed(self, charges: Sequence[Charge]) -> None:
        self._check()

    async def rebase(
        self, user_id: int, ledger_totals: Mapping[Period, int], pending_max_age_s: float
    ) -> None:
        self._check()

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        return True

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        return None


@dataclass
class RecordingSink:
    """A ``limits.ports.ChargeSink`` that records what it is given and, when it has counters,
    charges them at once (what ``LedgerRecorder`` does first, minus the batching)."""

    counters: FakeCounters | None = None
    submitted: list[tuple[LedgerEntry, Charge]] = field(default_factory=list)

    def submit(self, entry: LedgerEntry, charge: Charge) -> None:
        self.submitted.append((entry, charge))
        if self.counters is not None:
            run(self.counters.charge([charge]))
