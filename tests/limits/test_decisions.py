"""limits.decisions: admission as a value (SPEC §2, STYLE §4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limits.decisions import Allowed, Denied, decide
from limits.periods import PeriodKind, bounds
from limits.scopes import UNLIMITED, Resolution, Source

PERIOD = bounds(PeriodKind.MONTH, datetime(2026, 11, 18, 12, tzinfo=UTC))
amounts = st.integers(min_value=0, max_value=10**15)
resolutions = st.one_of(
    st.just(UNLIMITED),
    st.builds(Resolution, amounts, st.just(Source.USER)),
    st.builds(Resolution, amounts, st.just(Source.GROUP), st.text(min_size=1, max_size=5)),
    st.builds(Resolution, amounts, st.just(Source.DEFAULT)),
)


@pytest.mark.parametrize(
    ("limit", "spent", "allowed"),
    [
        (100, 99, True),  # one micro-dollar left: still allowed
        (100, 100, False),  # spent == limit: denied
        (100, 101, False),
        (0, 0, False),  # a limit of 0 blocks everything
        (1, 0, True),
    ],
)
def test_check_mode_edges(limit: int, spent: int, allowed: bool) -> None:
    decision = decide(Resolution(limit, Source.USER), PERIOD, spent)
    assert isinstance(decision, Allowed) is allowed


@pytest.mark.parametrize(
    ("limit", "spent", "reserved", "allowed"),
    [
        (100, 50, 49, True),
        (100, 50, 50, False),
        (100, 0, 100, False),
        (100, 99, 0, True),
    ],
)
def test_reserve_mode_counts_other_reservations(
    limit: int, spent: int, reserved: int, allowed: bool
) -> None:
    decision = decide(Resolution(limit, Source.USER), PERIOD, spent, reserved)
    assert isinstance(decision, Allowed) is allowed


@given(amounts, amounts)
def test_unlimited_is_always_allowed(spent: int, reserved: int) -> None:
    assert decide(UNLIMITED, PERIOD, spent, reserved) == Allowed(UNLIMITED, PERIOD, spent, reserved)


@given(resolutions, amounts, amounts)
def test_decide_is_the_spec_rule(resolution: Resolution, spent: int, reserved: int) -> None:
    decision = decide(resolution, PERIOD, spent, reserved)
    limit = resolution.limit_micros
    if limit is None or spent + reserved < limit:
        assert decision == Allowed(resolution, PERIOD, spent, reserved)
    else:
        assert decision == Denied(resolution, PERIOD, limit, spent, reserved)


def test_denied_carries_its_hints() -> None:
    resolution = Resolution(5_000_000, Source.GROUP, "interns")
    decision = decide(resolution, PERIOD, 5_000_001)
    assert isinstance(decision, Denied)
    assert decision.limit_micros == 5_000_000
    assert decision.spent_micros == 5_000_001
    assert decision.reserved_micros == 0
    assert decision.resolution.source_group == "interns"
    assert decision.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert decision.period is PERIOD


def test_check_mode_default_reserved_is_zero() -> None:
    assert decide(Resolution(10, Source.USER), PERIOD, 3) == Allowed(
        Resolution(10, Source.USER), PERIOD, 3, 0
    )
