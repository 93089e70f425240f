"""Spend periods: UTC-aligned calendar windows (SPEC §2).

Rules
1. A period is the half-open interval ``[start_at, end_at)`` in UTC. ``end_at`` is the reset time.
2. ``day`` starts at 00:00 UTC; ``week`` is the ISO week starting Monday 00:00 UTC; ``month``
   starts on the 1st at 00:00 UTC.
3. Periods of one kind tile time: the end of one is the start of the next, so rollover needs no
   job; counters are keyed by ``(kind, start_at)``.
4. No clock is read here: callers pass ``at`` (a timezone-aware instant).
5. :func:`bounds` is a pure function of ``(kind, at)``; :class:`BoundsCache` remembers the last
   answer per kind, so the hot path (one period per request, three per charge) builds a
   ``Period`` only when the clock crosses into a new one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["BoundsCache", "Period", "PeriodKind", "bounds"]


class PeriodKind(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    start_at: datetime
    end_at: datetime
    key: str = field(init=False, repr=False, compare=False)
    """A stable name for storage keys, e.g. ``month:2026-11-01`` (computed once)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.kind.value}:{self.start_at.date().isoformat()}")

    def contains(self, at: datetime) -> bool:
        return self.start_at <= at < self.end_at


def bounds(kind: PeriodKind, at: datetime) -> Period:
    """The period of ``kind`` that contains ``at``.

    ``at`` may be in any timezone; the answer is in UTC. ``kind`` may also be given as its
    string value (``"week"``), as read from storage. Raises ``ValueError`` when ``at`` is naive
    (no timezone, or a tzinfo whose ``utcoffset`` is None: Python's definition of naive), since a
    naive time has no UTC meaning, and when ``kind`` is not a period kind.
    """
    if at.utcoffset() is None:
        raise ValueError("bounds() needs a timezone-aware datetime")
    # Coerce, so that a plain "week" is a week: the identity tests below would silently send
    # any non-member to the month branch.
    kind = PeriodKind(kind)
    utc = at.astimezone(UTC)
    midnight = datetime(utc.year, utc.month, utc.day, tzinfo=UTC)
    if kind is PeriodKind.DAY:
        start = midnight
        end = start + timedelta(days=1)
    elif kind is PeriodKind.WEEK:
        start = midnight - timedelta(days=midnight.weekday())  # Monday == 0
        end = start + timedelta(days=7)
    else:
        start = midnight.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return Period(kind, start, end)


class BoundsCache:
    """:func:`bounds` with a memory of the last period per kind (rule 5).

    Answers exactly as :func:`bounds` does (same errors included); it only skips the
    arithmetic, and returns the same ``Period`` object, while ``at`` stays inside it.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, Period] = {}

    def bounds(self, kind: PeriodKind, at: datetime) -> Period:
        """The period of ``kind`` containing ``at``; raises ``ValueError`` as :func:`bounds`."""
        period = self._last.get(kind)
        if period is not None:
            try:
                if period.start_at <= at < period.end_at:
                    return period
            except TypeError:  # a naive ``at``: bounds() says why it is refused
                pass
        period = bounds(kind, at)
        self._last[period.kind] = period
        return period
