"""A Hypothesis state machine over ``MemoryCounterStore`` (h2 ``tests/test_state_machines.py``).

Rules drive reserve / charge (settling a live reservation) / release / committed / rebase and the
clock; a model tracks live reservations, pending charges and the ledger. Invariants:

1. ``reserved`` is never negative and equals the sum of the live reservations in the model.
2. ``spent`` equals everything charged: rebase keeps it (the ledger holds what it drops).
3. With limit L and reservations of at most A micros, admitted spend never exceeds L + A:
   ``spent + reserved <= L + A`` whatever the order of operations.

The store's coroutines are driven without an event loop: :func:`run` fails if one suspends,
which also checks the memory store's rule that no method awaits inside its critical section.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from limits.periods import PeriodKind, bounds
from limits.ports import Charge
from limits.store.memory import MemoryCounterStore
from tests.conftest import FakeClock

T = TypeVar("T")
USER = 1
TTL_S = 60
STEP = 10  # amounts move in steps of 10 micros, so sums often land exactly on the limit


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending; return its value."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise AssertionError("MemoryCounterStore suspended: its methods must not await")


class CounterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = MemoryCounterStore(self.clock)
        self.period = bounds(PeriodKind.MONTH, self.clock.now())
        self.limit_micros = 0
        self.max_amount_micros = 0
        self.live: dict[str, tuple[int, datetime]] = {}  # reservation -> (amount, expires_at)
        self.pending: dict[str, tuple[int, datetime]] = {}  # request -> (cost, charged_at)
        self.ledger_micros = 0
        self.charged_micros = 0
        self.serial = 0

    def _next_id(self, kind: str) -> str:
        self.serial += 1
        return f"{kind}-{self.serial}"

    def _expire(self) -> None:
        now = self.clock.now()
        self.live = {rid: held for rid, held in self.live.items() if now < held[1]}

    @initialize(limit=st.integers(0, 20), max_amount=st.integers(0, 6))
    def configure(self, limit: int, max_amount: int) -> None:
        self.limit_micros, self.max_amount_micros = limit * STEP, max_amount * STEP

    @rule(data=st.data())
    def reserve(self, data: st.DataObject) -> None:
        amount = STEP * data.draw(st.integers(0, self.max_amount_micros // STEP), label="amount")
        rid = self._next_id("r")
        admitted, spent, before = run(
            self.store.reserve(USER, self.period, rid, amount, self.limit_micros, TTL_S)
        )
        self._expire()
        assert before == sum(amount for amount, _ in self.live.values())
        assert spent == self.charged_micros
        assert admitted == (spent + before < self.limit_micros)
        if admitted:
            self.live[rid] = (amount, self.clock.now() + timedelta(seconds=TTL_S))

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.live)), label="reservation")
        amount, _ = self.live.pop(rid)
        cost = data.draw(st.integers(0, amount), label="cost")  # the amount is an upper bound
        request_id = self._next_id("q")
        now = self.clock.now()
        run(self.store.charge([Charge(request_id, USER, cost, now, rid, self.period)]))
        self.pending[request_id] = (cost, now)
        self.charged_micros += cost

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from([*sorted(self.live), "never-held"]), label="reservation")
        run(self.store.release(USER, self.period, rid))
        self.live.pop(rid, None)

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(sorted(self.pending)), min_size=1))
        batch = [Charge(rid, USER, *self.pending[rid]) for rid in sorted(chosen)]
        run(self.store.committed(batch))
        for request_id in chosen:
            self.ledger_micros += self.pending.pop(request_id)[0]

    @rule(max_age_s=st.integers(0, 2 * TTL_S))
    def rebase(self, max_age_s: int) -> None:
        # A pending charge older than the max age is taken to be in the ledger already (its
        # ``committed`` was lost), as the refresher assumes; the model moves it there.
        cutoff = self.clock.now() - timedelta(seconds=max_age_s)
        for request_id, (cost, charged_at) in list(self.pending.items()):
            if charged_at < cutoff:
                self.ledger_micros += cost
                del self.pending[request_id]
        run(self.store.rebase(USER, {self.period: self.ledger_micros}, max_age_s))

    @rule(seconds=st.sampled_from([0, 1, TTL_S // 2, TTL_S - 1, TTL_S, TTL_S + 1]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self._expire()

    @invariant()
    def counters_match_the_model(self) -> None:
        spent, reserved = run(self.store.read(USER, self.period))
        assert reserved >= 0
        assert reserved == sum(amount for amount, _ in self.live.values())
        assert (
            spent
            == self.charged_micros
            == self.ledger_micros + sum(cost for cost, _ in self.pending.values())
        )

    @invariant()
    def overspend_is_bounded_by_one_reservation(self) -> None:
        spent, reserved = run(self.store.read(USER, self.period))
        assert spent + reserved <= self.limit_micros + self.max_amount_micros


CounterMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestCounterMachine = CounterMachine.TestCase
