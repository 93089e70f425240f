"""Spend periods: UTC-aligned calendar windows (SPEC §2).

Rules
1. A period is the half-open interval ``[start_at, end_at)`` in UTC. ``end_at`` is the reset time.
2. ``day`` starts at 00:00 UTC; ``week`` is the ISO week starting Monday 00:00 UTC; ``month``
   starts on the 1st at 00:00 UTC.
3. Periods of one kind tile time: the end of one is the start of the next, so rollover needs no
   job; counters are keyed by ``(kind, start_at)``.
4. No clock is read here: callers pass ``at`` (a timezone-aware instant).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Period", "PeriodKind", "bounds"]


class PeriodKind(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    start_at: datetime
    end_at: datetime

    @property
    def key(self) -> str:
        """A stable name for storage keys, e.g. ``month:2026-11-01``."""
        return f"{self.kind.value}:{self.start_at.date().isoformat()}"

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
