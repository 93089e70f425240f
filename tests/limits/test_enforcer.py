"""limits.enforcer: admit / settle / release over fake ports (SPEC §2).

Fakes come from ``enforcer_fakes.py`` and implement the ``limits.ports`` Protocols; the state
machine at the end drives the enforcer's coroutines without an event loop (the fakes never
suspend) and checks the reserve-mode overspend bound.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from limits.decisions import Allowed, Denied
from limits.enforcer import Admission, Enforcer, Mode, OnStoreError
from limits.errors import StoreTimeout, StoreUnavailable
from limits.periods import PeriodKind, bounds
from limits.ports import ChargeSink, CounterStore, Directory, LedgerEntry, Principal, UserLimits
from limits.scopes import LimitConfig, Resolution, Source
from limits.spent_cache import SpentCache
from limits.usage import Usage
from tests.conftest import FakeClock
from tests.limits.enforcer_fakes import FakeCounters, FakeDirectory, RecordingSink, run

ALICE = Principal(user_id=7, user_name="alice", key_id=70)
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
MONTH = bounds(PeriodKind.MONTH, NOW)


def make(
    *,
    user_limit: int | None = None,
    groups: dict[str, int] | None = None,
    config: LimitConfig | None = None,
    spent: int = 0,
    mode: Mode = Mode.CHECK,
    on_store_error: OnStoreError = OnStoreError.ALLOW,
) -> tuple[Enforcer, FakeDirectory, FakeCounters, RecordingSink]:
    directory = FakeDirectory(
        config=config or LimitConfig(enabled=True),
        limits={ALICE.user_id: UserLimits(user_limit, groups or {})},
    )
    counters = FakeCounters(spent={ALICE.user_id: spent})
    sink = RecordingSink(counters)
    # Annotated as the ports: mypy checks that each fake satisfies its Protocol.
    ports: tuple[Directory, CounterStore, ChargeSink] = (directory, counters, sink)
    enforcer = Enforcer(
        directory=ports[0],
        counters=ports[1],
        sink=ports[2],
        clock=FakeClock(NOW),
        mode=mode,
        on_store_error=on_store_error,
        reservation_ttl_s=90.0,
    )
    return enforcer, directory, counters, sink


def entry(cost_micros: int, request_id: str = "req-1") -> LedgerEntry:
    return LedgerEntry(
        request_id=request_id,
        user_id=ALICE.user_id,
        model="gpt-4o",
        upstream="openai",
        endpoint="/v1/chat/completions",
        usage=Usage(input_tokens=10, output_tokens=5),
        cost_micros=cost_micros,
        estimated=False,
        started_at=NOW,
        charged_at=NOW + timedelta(seconds=2),
    )


# ---------------------------------------------------------------- check mode


@pytest.mark.parametrize(
    ("limit", "spent", "allowed"),
    [(1_000, 999, True), (1_000, 1_000, False), (1_000, 5_000, False), (0, 0, False)],
)
async def test_check_mode_edges(limit: int, spent: int, allowed: bool) -> None:
    enforcer, _, counters, _ = make(user_limit=limit, spent=spent)
    admission = await enforcer.admit(ALICE, estimate_micros=10**9)
    assert isinstance(admission.decision, Allowed) is allowed
    assert admission.decision.spent_micros == spent
    assert admission.reservation_id is None
    assert not admission.store_error
    assert counters.reads == [(ALICE.user_id, MONTH)]
    assert counters.holds == {}  # check mode never reserves


async def test_denied_names_limit_source_and_reset() -> None:
    enforcer, _, _, _ = make(groups={"interns": 500, "eng": 9_000}, spent=500)
    admission = await enforcer.admit(ALICE)
    decision = admission.decision
    assert isinstance(decision, Denied)
    assert decision.limit_micros == 500
    assert decision.resolution == Resolution(500, Source.GROUP, "interns")
    assert decision.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert admission.period == MONTH


async def test_period_follows_the_config_and_clock() -> None:
    config = LimitConfig(enabled=True, period=PeriodKind.DAY, default_limit_micros=10)
    enforcer, _, counters, _ = make(config=config)
    admission = await enforcer.admit(ALICE)
    assert admission.period == bounds(PeriodKind.DAY, NOW)
    assert admission.decision.resolution.source is Source.DEFAULT
    assert counters.reads == [(ALICE.user_id, bounds(PeriodKind.DAY, NOW))]


async def test_disabled_config_skips_the_user_limits_lookup() -> None:
    enforcer, directory, _, _ = make(config=LimitConfig(enabled=False), user_limit=0, spent=10**9)
    admission = await enforcer.admit(ALICE)
    assert isinstance(admission.decision, Allowed)
    assert admission.decision.resolution.unlimited
    assert directory.user_limits_calls == []


async def test_enabled_config_looks_up_the_user() -> None:
    enforcer, directory, _, _ = make(user_limit=5)
    await enforcer.admit(ALICE)
    assert directory.user_limits_calls == [ALICE.user_id]


# ---------------------------------------------------------------- reserve mode


async def test_reserve_mode_holds_the_estimate() -> None:
    enforcer, _, counters, _ = make(user_limit=1_000, spent=400, mode=Mode.RESERVE)
    admission = await enforcer.admit(ALICE, estimate_micros=250)
    assert isinstance(admission.decision, Allowed)
    assert admission.reservation_id is not None
    hold = counters.holds[admission.reservation_id]
    assert (hold.user_id, hold.period, hold.amount_micros, hold.ttl_s) == (
        ALICE.user_id,
        MONTH,
        250,
        90.0,
    )
    assert counters.reads == []  # one round trip: the atomic reserve, no separate read


async def test_reserve_mode_counts_other_reservations() -> None:
    enforcer, _, counters, _ = make(user_limit=1_000, spent=400, mode=Mode.RESERVE)
    first = await enforcer.admit(ALICE, estimate_micros=600)
    second = await enforcer.admit(ALICE, estimate_micros=1)
    assert isinstance(first.decision, Allowed)
    assert isinstance(second.decision, Denied)  # 400 spent + 600 reserved: nothing left
    assert second.decision.reserved_micros == 600
    assert second.reservation_id is None
    assert first.reservation_id is not None
    assert list(counters.holds) == [first.reservation_id]


async def test_reservation_ids_are_unique() -> None:
    enforcer, _, counters, _ = make(user_limit=10**9, mode=Mode.RESERVE)
    admissions = [await enforcer.admit(ALICE, estimate_micros=1) for _ in range(50)]
    assert len({a.reservation_id for a in admissions}) == 50
    assert len(counters.holds) == 50


async def test_reserve_mode_unlimited_user_reserves_nothing() -> None:
    enforcer, _, counters, _ = make(mode=Mode.RESERVE)  # no override, no default: unlimited
    admission = await enforcer.admit(ALICE, estimate_micros=100)
    assert isinstance(admission.decision, Allowed)
    assert admission.reservation_id is None
    assert counters.holds == {}
    assert counters.reads == [(ALICE.user_id, MONTH)]


@pytest.mark.parametrize("verdict", [True, False])
async def test_the_stores_atomic_verdict_wins(verdict: bool) -> None:
    # The store saw other traffic between our numbers and its check: whichever way it
    # answered, the admission follows it, and a reservation exists iff it admitted.
    spent = 2_000 if verdict else 0
    enforcer, _, counters, _ = make(user_limit=1_000, spent=spent, mode=Mode.RESERVE)
    counters.verdict = verdict
    admission = await enforcer.admit(ALICE, estimate_micros=10)
    assert isinstance(admission.decision, Allowed) is verdict
    assert (admission.reservation_id is not None) is verdict
    if not verdict:
        assert isinstance(admission.decision, Denied)
        assert admission.decision.limit_micros == 1_000


async def test_mode_and_policy_given_as_text_are_honoured() -> None:
    enforcer, _, counters, _ = make(user_limit=1_000, mode="reserve")  # type: ignore[arg-type]
    assert enforcer.mode is Mode.RESERVE
    admission = await enforcer.admit(ALICE, estimate_micros=5)
    assert admission.reservation_id in counters.holds
    strict, directory, _, _ = make(on_store_error="deny")  # type: ignore[arg-type]
    directory.fail = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        await strict.admit(ALICE)


# ---------------------------------------------------------------- store errors


@pytest.mark.parametrize("failing", ["directory", "counters"])
@pytest.mark.parametrize("mode", list(Mode))
async def test_store_error_allow_admits_flagged(failing: str, mode: Mode) -> None:
    enforcer, directory, counters, _ = make(user_limit=0, mode=mode)
    error = StoreTimeout("slow")
    if failing == "directory":
        directory.fail = error
    else:
        counters.fail = error
    admission = await enforcer.admit(ALICE, estimate_micros=10)
    assert isinstance(admission.decision, Allowed)
    assert admission.store_error
    assert admission.reservation_id is None
    assert admission.decision.spent_micros == 0


@pytest.mark.parametrize("failing", ["directory", "counters"])
@pytest.mark.parametrize("mode", list(Mode))
async def test_store_error_deny_raises(failing: str, mode: Mode) -> None:
    enforcer, directory, counters, _ = make(
        user_limit=10**9, mode=mode, on_store_error=OnStoreError.DENY
    )
    if failing == "directory":
        directory.fail = StoreUnavailable("down")
    else:
        counters.fail = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable, match="down"):
        await enforcer.admit(ALICE)


# ---------------------------------------------------------------- settle and release


async def test_settle_hands_the_charge_with_its_reservation_to_the_sink() -> None:
    enforcer, _, counters, sink = make(user_limit=1_000, mode=Mode.RESERVE)
    admission = await enforcer.admit(ALICE, estimate_micros=300)
    done = entry(cost_micros=120)
    enforcer.settle(admission, done)
    [(submitted_entry, charge)] = sink.submitted
    assert submitted_entry is done
    assert charge.request_id == "req-1"
    assert charge.user_id == ALICE.user_id
    assert charge.cost_micros == 120
    assert charge.charged_at == done.charged_at
    assert charge.reservation_id == admission.reservation_id
    assert charge.reservation_period == MONTH
    # The fake sink charged the counters: the reservation is gone, the cost counted.
    assert counters.holds == {}
    assert counters.spent[ALICE.user_id] == 120


async def test_settle_without_reservation() -> None:
    enforcer, _, _, sink = make(user_limit=1_000)
    admission = await enforcer.admit(ALICE)
    enforcer.settle(admission, entry(cost_micros=5))
    [(_, charge)] = sink.submitted
    assert charge.reservation_id is None
    assert charge.reservation_period is None


async def test_release_drops_the_reservation() -> None:
    enforcer, _, counters, sink = make(user_limit=1_000, mode=Mode.RESERVE)
    admission = await enforcer.admit(ALICE, estimate_micros=300)
    await enforcer.release(admission)
    assert counters.holds == {}
    assert counters.released == [admission.reservation_id]
    assert sink.submitted == []


async def test_release_without_reservation_touches_nothing() -> None:
    enforcer, _, counters, _ = make(user_limit=1_000)
    admission = await enforcer.admit(ALICE)
    counters.fail = StoreUnavailable("would raise if called")
    await enforcer.release(admission)
    assert counters.released == []


async def test_release_swallows_store_errors() -> None:
    enforcer, _, counters, _ = make(user_limit=1_000, mode=Mode.RESERVE)
    admission = await enforcer.admit(ALICE, estimate_micros=300)
    counters.fail = StoreUnavailable("down")
    await enforcer.release(admission)  # no exception: the reservation expires on its own
    assert admission.reservation_id in counters.holds


# ---------------------------------------------------------------- status


async def test_status() -> None:
    enforcer, _, _, _ = make(groups={"eng": 2_000_000}, spent=2_500_000)
    status = await enforcer.status(ALICE)
    assert status.to_dict() == {
        "user": "alice",
        "enabled": True,
        "limit_micros": 2_000_000,
        "source": "group",
        "source_group": "eng",
        "period": "month",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "spent_micros": 2_500_000,
        "remaining_micros": 0,
    }


async def test_status_raises_store_errors() -> None:
    enforcer, directory, _, _ = make()
    directory.fail = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        await enforcer.status(ALICE)


# ---------------------------------------------------------------- the overspend bound


class ReserveMachine(RuleBasedStateMachine):
    """Calls are admitted, then settled (cost <= their estimate) or released, in any order and
    interleaving. Invariants (SPEC §2, reserve mode):

    1. Overspend is bounded by one call's cost: ``spent < limit + max_estimate``, because every
       admission saw ``spent + reserved < limit`` and a call costs at most what it reserved.
    2. ``reserved`` is exactly what the in-flight admitted calls hold: settling and releasing
       each drop their own reservation, never another's.
    3. Nothing is charged for released calls; everything settled is charged once.
    """

    MAX_ESTIMATE = 1_000

    def __init__(self) -> None:
        super().__init__()
        self.limit = 5_000
        self.enforcer, _, self.counters, self.sink = make(user_limit=self.limit, mode=Mode.RESERVE)
        # Keyed by the (random) reservation id, but drawn from in admission order: a draw must
        # pick the same call on every replay, or Hypothesis cannot shrink.
        self.in_flight: dict[str, tuple[Admission, int]] = {}
        self.charged = 0
        self.next_request = 0

    @rule(estimate=st.integers(0, MAX_ESTIMATE))
    def admit(self, estimate: int) -> None:
        admission = run(self.enforcer.admit(ALICE, estimate_micros=estimate))
        if admission.reservation_id is not None:
            self.in_flight[admission.reservation_id] = (admission, estimate)
        else:
            assert isinstance(admission.decision, Denied)
            decision = admission.decision
            assert decision.spent_micros + decision.reserved_micros >= self.limit

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), fraction=st.fractions(0, 1))
    def settle(self, data: st.DataObject, fraction: Fraction) -> None:
        reservation_id = data.draw(st.sampled_from(list(self.in_flight)))
        admission, estimate = self.in_flight.pop(reservation_id)
        cost = int(estimate * fraction)  # a call costs at most what it reserved
        self.next_request += 1
        self.enforcer.settle(admission, entry(cost, request_id=f"req-{self.next_request}"))
        self.charged += cost

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        reservation_id = data.draw(st.sampled_from(list(self.in_flight)))
        admission, _ = self.in_flight.pop(reservation_id)
        run(self.enforcer.release(admission))

    @invariant()
    def overspend_is_bounded_by_one_call(self) -> None:
        assert self.counters.spent[ALICE.user_id] < self.limit + self.MAX_ESTIMATE

    @invariant()
    def reserved_is_what_in_flight_calls_hold(self) -> None:
        assert self.counters.reserved(ALICE.user_id) == sum(e for _, e in self.in_flight.values())
        assert set(self.counters.holds) == set(self.in_flight)

    @invariant()
    def every_settled_call_is_charged_once(self) -> None:
        assert self.counters.spent[ALICE.user_id] == self.charged
        assert len(self.sink.submitted) == self.next_request


TestReserveMachine = ReserveMachine.TestCase
TestReserveMachine.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)


# ---------------------------------------------------------------- the read cache (mode check)


def make_cached(
    mode: Mode = Mode.CHECK, *, user_limit: int = 1_000, spent: int = 0
) -> tuple[Enforcer, FakeCounters, SpentCache]:
    directory = FakeDirectory(limits={ALICE.user_id: UserLimits(user_limit)})
    counters = FakeCounters(spent={ALICE.user_id: spent})
    cache = SpentCache(counters, max_age_s=60.0)
    enforcer = Enforcer(
        directory=directory,
        counters=counters,
        sink=RecordingSink(),  # records only: the counters do not see the charge
        clock=FakeClock(NOW),
        mode=mode,
        spent_cache=cache,
    )
    return enforcer, counters, cache


async def test_check_mode_reads_through_the_cache() -> None:
    enforcer, counters, cache = make_cached(spent=400)
    for _ in range(3):
        admission = await enforcer.admit(ALICE)
        assert admission.decision.spent_micros == 400
    assert counters.reads == [(ALICE.user_id, MONTH)]  # one store read for three admissions
    assert cache.hits == 2


async def test_a_settled_charge_counts_at_once_in_check_mode() -> None:
    enforcer, counters, _ = make_cached(user_limit=1_000, spent=400)
    admission = await enforcer.admit(ALICE)
    enforcer.settle(admission, entry(cost_micros=600))  # the store has not seen it yet
    assert counters.spent[ALICE.user_id] == 400
    denied = await enforcer.admit(ALICE)
    assert isinstance(denied.decision, Denied)
    assert denied.decision.spent_micros == 1_000


async def test_reserve_mode_never_uses_the_cache() -> None:
    enforcer, counters, cache = make_cached(Mode.RESERVE, user_limit=1_000, spent=400)
    await enforcer.admit(ALICE, estimate_micros=100)
    counters.spent[ALICE.user_id] = 5_000  # another process overspent: seen at once
    admission = await enforcer.admit(ALICE, estimate_micros=100)
    assert isinstance(admission.decision, Denied)
    assert cache.reads == 0
    assert counters.reads == []  # only the atomic reserve-and-check


async def test_status_reads_the_store_not_the_cache() -> None:
    enforcer, counters, _ = make_cached(spent=400)
    await enforcer.admit(ALICE)
    counters.spent[ALICE.user_id] = 450
    assert (await enforcer.status(ALICE)).spent_micros == 450
