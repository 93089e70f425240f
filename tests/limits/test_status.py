"""limits.status: the status object of ``/v1/usage`` and ``GET /users/{name}/usage`` (SPEC §5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from limits.periods import PeriodKind, bounds
from limits.scopes import UNLIMITED, LimitConfig, Resolution, Source
from limits.status import SpendStatus, spend_status

AT = datetime(2026, 11, 18, 12, tzinfo=UTC)
MONTH = bounds(PeriodKind.MONTH, AT)
SPEC_KEYS = {
    "user",
    "enabled",
    "limit_micros",
    "source",
    "source_group",
    "period",
    "period_start",
    "period_end",
    "spent_micros",
    "remaining_micros",
}


def test_to_dict_with_a_group_limit() -> None:
    status = SpendStatus("alice", True, Resolution(10_000_000, Source.GROUP, "eng"), MONTH, 2_500)
    assert status.to_dict() == {
        "user": "alice",
        "enabled": True,
        "limit_micros": 10_000_000,
        "source": "group",
        "source_group": "eng",
        "period": "month",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "spent_micros": 2_500,
        "remaining_micros": 9_997_500,
    }


def test_to_dict_unlimited_has_nulls() -> None:
    status = spend_status("bob", LimitConfig(enabled=False), UNLIMITED, MONTH, 123)
    body = status.to_dict()
    assert set(body) == SPEC_KEYS
    assert body["enabled"] is False
    assert body["limit_micros"] is None
    assert body["source"] is None
    assert body["source_group"] is None
    assert body["remaining_micros"] is None
    assert body["spent_micros"] == 123


def test_remaining_is_clamped_at_zero() -> None:
    status = SpendStatus("carol", True, Resolution(100, Source.USER), MONTH, 250)
    assert status.remaining_micros == 0
    assert status.to_dict()["remaining_micros"] == 0


def test_zero_limit_leaves_nothing() -> None:
    status = SpendStatus("dan", True, Resolution(0, Source.DEFAULT), MONTH, 0)
    assert status.to_dict()["remaining_micros"] == 0
    assert status.to_dict()["source"] == "default"


def test_period_kinds_and_times() -> None:
    week = bounds(PeriodKind.WEEK, AT)
    body = SpendStatus("eve", True, Resolution(1, Source.USER), week, 0).to_dict()
    assert (body["period"], body["period_start"], body["period_end"]) == (
        "week",
        "2026-11-16T00:00:00Z",
        "2026-11-23T00:00:00Z",
    )
    assert datetime.fromisoformat(body["period_end"]) == week.end_at


def test_spend_status_takes_enabled_from_the_config() -> None:
    config = LimitConfig(enabled=True, period=PeriodKind.MONTH, default_limit_micros=5)
    status = spend_status("fay", config, Resolution(5, Source.DEFAULT), MONTH, 1)
    assert status == SpendStatus("fay", True, Resolution(5, Source.DEFAULT), MONTH, 1)


resolutions = st.one_of(
    st.just(UNLIMITED),
    st.builds(Resolution, st.integers(0, 10**12), st.sampled_from([Source.USER, Source.DEFAULT])),
    st.builds(Resolution, st.integers(0, 10**12), st.just(Source.GROUP), st.text(max_size=8)),
)


@given(resolutions, st.integers(0, 10**12), st.booleans(), st.sampled_from(PeriodKind))
def test_to_dict_shape_and_remaining(
    resolution: Resolution, spent: int, enabled: bool, kind: PeriodKind
) -> None:
    body = SpendStatus("u", enabled, resolution, bounds(kind, AT), spent).to_dict()
    assert set(body) == SPEC_KEYS
    assert json.loads(json.dumps(body)) == body  # plain JSON values only
    limit = resolution.limit_micros
    expected_remaining = None if limit is None else max(0, limit - spent)
    assert body["remaining_micros"] == expected_remaining
    assert body["period_start"].endswith("Z")
    assert body["period_end"].endswith("Z")
