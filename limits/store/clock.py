"""The wall clock: the one place in ``limits`` that reads the current time.

Rule: everything else in ``limits`` takes time as a value (``at=``) or through the ``Clock``
port, so tests can use a fake clock; only :class:`SystemClock` calls ``datetime.now``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["SystemClock"]


class SystemClock:
    """A ``limits.ports.Clock`` reading the system time."""

    __slots__ = ()

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)
