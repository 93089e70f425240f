"""limits.periods: UTC-aligned day / ISO week / month windows (SPEC §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limits.periods import BoundsCache, Period, PeriodKind, bounds

# Instants whose period is representable: datetime stops at 9999-12-31, so December 9999 has
# no month end (nor does the week of 9999-12-31). Years before 1900 work but add nothing.
MIN_AT = datetime(1900, 1, 2)  # noqa: DTZ001 - Hypothesis takes naive bounds, adds the zone
MAX_AT = datetime(9999, 11, 30)  # noqa: DTZ001

# Fixed offsets up to ±23:59 (every offset Python allows), and real zones with DST rules.
fixed_offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
any_timezone: st.SearchStrategy[tzinfo] = st.one_of(st.just(UTC), fixed_offsets, st.timezones())
aware_instants = st.datetimes(
    min_value=MIN_AT, max_value=MAX_AT, timezones=any_timezone, allow_imaginary=False
)
kinds = st.sampled_from(PeriodKind)


@given(kinds, aware_instants)
def test_every_instant_lies_in_its_period(kind: PeriodKind, at: datetime) -> None:
    period = bounds(kind, at)
    assert period.start_at <= at < period.end_at
    assert period.contains(at)
    assert period.kind is kind


@given(kinds, aware_instants)
def test_periods_tile_time(kind: PeriodKind, at: datetime) -> None:
    period = bounds(kind, at)
    assert bounds(kind, period.start_at) == period
    assert bounds(kind, period.end_at).start_at == period.end_at
    assert bounds(kind, period.end_at - timedelta(microseconds=1)) == period
    assert bounds(kind, period.start_at - timedelta(microseconds=1)).end_at == period.start_at


@given(kinds, aware_instants)
def test_periods_are_utc_and_start_at_midnight(kind: PeriodKind, at: datetime) -> None:
    period = bounds(kind, at)
    for edge in (period.start_at, period.end_at):
        assert edge.tzinfo is UTC
        assert (edge.hour, edge.minute, edge.second, edge.microsecond) == (0, 0, 0, 0)


@given(kinds, aware_instants)
def test_timezone_of_the_input_does_not_matter(kind: PeriodKind, at: datetime) -> None:
    assert bounds(kind, at) == bounds(kind, at.astimezone(UTC))


@given(aware_instants)
def test_day_is_the_utc_calendar_day(at: datetime) -> None:
    period = bounds(PeriodKind.DAY, at)
    assert period.start_at.date() == at.astimezone(UTC).date()
    assert period.end_at - period.start_at == timedelta(days=1)


@given(aware_instants)
def test_week_is_the_iso_week_from_monday(at: datetime) -> None:
    period = bounds(PeriodKind.WEEK, at)
    assert period.start_at.weekday() == 0  # Monday
    assert period.start_at.isocalendar()[:2] == at.astimezone(UTC).isocalendar()[:2]
    assert period.end_at - period.start_at == timedelta(days=7)


@given(aware_instants)
def test_month_starts_on_the_first(at: datetime) -> None:
    period = bounds(PeriodKind.MONTH, at)
    utc = at.astimezone(UTC)
    assert period.start_at.day == 1
    assert (period.start_at.year, period.start_at.month) == (utc.year, utc.month)
    assert period.end_at.day == 1
    assert 28 <= (period.end_at - period.start_at).days <= 31


@pytest.mark.parametrize(
    ("kind", "at", "start", "end"),
    [
        # 2026-11-18 is a Wednesday.
        (PeriodKind.DAY, "2026-11-18T12:00:00+00:00", "2026-11-18", "2026-11-19"),
        (PeriodKind.WEEK, "2026-11-18T12:00:00+00:00", "2026-11-16", "2026-11-23"),
        (PeriodKind.MONTH, "2026-11-18T12:00:00+00:00", "2026-11-01", "2026-12-01"),
        # Year end, and an ISO week that straddles it (2026-12-28 is a Monday).
        (PeriodKind.MONTH, "2026-12-31T23:59:59.999999+00:00", "2026-12-01", "2027-01-01"),
        (PeriodKind.WEEK, "2027-01-02T00:00:00+00:00", "2026-12-28", "2027-01-04"),
        # Leap February.
        (PeriodKind.MONTH, "2028-02-29T10:00:00+00:00", "2028-02-01", "2028-03-01"),
        (PeriodKind.MONTH, "2027-02-14T10:00:00+00:00", "2027-02-01", "2027-03-01"),
        # Sunday 23:30 in New York is already Monday in UTC: a new week and a new month.
        (PeriodKind.WEEK, "2026-11-29T23:30:00-05:00", "2026-11-30", "2026-12-07"),
        (PeriodKind.MONTH, "2026-11-30T23:30:00-05:00", "2026-12-01", "2027-01-01"),
        # Monday 00:30 in Tokyo is still Sunday in UTC: the previous week.
        (PeriodKind.WEEK, "2026-11-23T00:30:00+09:00", "2026-11-16", "2026-11-23"),
        (PeriodKind.DAY, "2026-11-23T00:30:00+09:00", "2026-11-22", "2026-11-23"),
        # The period start itself belongs to the period; the end belongs to the next.
        (PeriodKind.DAY, "2026-11-18T00:00:00+00:00", "2026-11-18", "2026-11-19"),
        (PeriodKind.WEEK, "2026-11-23T00:00:00+00:00", "2026-11-23", "2026-11-30"),
    ],
)
def test_known_periods(kind: PeriodKind, at: str, start: str, end: str) -> None:
    period = bounds(kind, datetime.fromisoformat(at))
    assert period.start_at == datetime.fromisoformat(start).replace(tzinfo=UTC)
    assert period.end_at == datetime.fromisoformat(end).replace(tzinfo=UTC)


def test_naive_datetime_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bounds(PeriodKind.DAY, datetime(2026, 11, 18, 12, 0))  # noqa: DTZ001 - naive on purpose


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: Python counts such datetimes as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_tzinfo_without_offset_counts_as_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bounds(PeriodKind.MONTH, datetime(2026, 11, 18, tzinfo=_NoOffset()))


@given(st.sampled_from([k.value for k in PeriodKind]), aware_instants)
def test_kind_may_be_given_as_text(kind: str, at: datetime) -> None:
    period = bounds(kind, at)  # type: ignore[arg-type]  # storage hands back text
    assert period == bounds(PeriodKind(kind), at)
    assert period.kind is PeriodKind(kind)


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        bounds("fortnight", datetime(2026, 11, 18, tzinfo=UTC))  # type: ignore[arg-type]


def test_key_names_kind_and_start() -> None:
    at = datetime(2026, 11, 18, 12, tzinfo=UTC)
    assert bounds(PeriodKind.MONTH, at).key == "month:2026-11-01"
    assert bounds(PeriodKind.WEEK, at).key == "week:2026-11-16"
    assert bounds(PeriodKind.DAY, at).key == "day:2026-11-18"


def test_period_is_a_frozen_hashable_value() -> None:
    at = datetime(2026, 11, 18, 12, tzinfo=UTC)
    period = bounds(PeriodKind.DAY, at)
    assert {period: 1}[bounds(PeriodKind.DAY, at + timedelta(hours=1))] == 1
    assert period != bounds(PeriodKind.WEEK, at)
    with pytest.raises(AttributeError):
        period.end_at = at  # type: ignore[misc]
    assert isinstance(period, Period)


# --- BoundsCache ------------------------------------------------------------------------------


@given(kinds, st.lists(aware_instants, min_size=1, max_size=20))
def test_the_cache_answers_as_bounds_does(kind: PeriodKind, instants: list[datetime]) -> None:
    cache = BoundsCache()
    for at in sorted(instants) + instants:  # runs inside one period, and jumps around
        assert cache.bounds(kind, at) == bounds(kind, at)


def test_the_cache_reuses_the_period_while_time_stays_inside_it() -> None:
    cache = BoundsCache()
    at = datetime(2026, 11, 18, 12, tzinfo=UTC)
    first = cache.bounds(PeriodKind.MONTH, at)
    assert cache.bounds(PeriodKind.MONTH, at + timedelta(days=5)) is first
    assert cache.bounds("month", at) is first  # type: ignore[arg-type]  # text, as stored
    december = cache.bounds(PeriodKind.MONTH, first.end_at)
    assert december.start_at == first.end_at
    assert cache.bounds(PeriodKind.DAY, at).kind is PeriodKind.DAY


def test_the_cache_refuses_naive_times_as_bounds_does() -> None:
    cache = BoundsCache()
    cache.bounds(PeriodKind.DAY, datetime(2026, 11, 18, 12, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.bounds(PeriodKind.DAY, datetime(2026, 11, 18, 13))  # noqa: DTZ001


def test_the_period_key_is_computed_once_and_not_compared() -> None:
    period = bounds(PeriodKind.WEEK, datetime(2026, 11, 18, 12, tzinfo=UTC))
    assert period.key == "week:2026-11-16"
    assert "key" not in repr(period)
    assert period == Period(PeriodKind.WEEK, period.start_at, period.end_at)
