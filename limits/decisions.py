"""The admission decision (SPEC §2), a pure function in the manner of h2's flow-control windows.

Rules
1. Unlimited (no resolved limit) -> always allowed.
2. Mode ``check``: allowed iff ``spent < limit``.
3. Mode ``reserve``: allowed iff ``spent + reserved < limit``, where ``reserved`` is what other
   in-flight calls hold. Each admitted call then reserves an upper bound of its own cost, so the
   overspend is bounded by one call's cost whatever the concurrency.
4. Being over the limit is a value (:class:`Denied`), not an exception; it carries the hints a
   caller needs to explain itself (limit, spent, scope and reset time), never an HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from limits.periods import Period
from limits.scopes import Resolution

__all__ = ["Allowed", "Decision", "Denied", "decide"]


@dataclass(frozen=True, slots=True)
class Allowed:
    resolution: Resolution
    period: Period
    spent_micros: int
    reserved_micros: int = 0


@dataclass(frozen=True, slots=True)
class Denied:
    resolution: Resolution
    period: Period
    limit_micros: int
    spent_micros: int
    reserved_micros: int = 0

    @property
    def resets_at(self) -> datetime:
        return self.period.end_at


Decision = Allowed | Denied


def decide(
    resolution: Resolution, period: Period, spent_micros: int, reserved_micros: int = 0
) -> Decision:
    """Admit or deny one call. ``reserved_micros`` is 0 in ``check`` mode."""
    limit = resolution.limit_micros
    if limit is None or spent_micros + reserved_micros < limit:
        return Allowed(resolution, period, spent_micros, reserved_micros)
    return Denied(resolution, period, limit, spent_micros, reserved_micros)
