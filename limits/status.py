"""A user's spend status for the current period: the answer of ``/v1/usage`` and the admin API.

Rule: unlimited -> ``limit_micros``, ``source`` and ``remaining_micros`` are None; otherwise
``remaining_micros = max(0, limit - spent)`` (SPEC §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from limits.periods import Period
from limits.scopes import LimitConfig, Resolution

__all__ = ["SpendStatus", "spend_status"]


@dataclass(frozen=True, slots=True)
class SpendStatus:
    user: str
    enabled: bool
    resolution: Resolution
    period: Period
    spent_micros: int

    @property
    def remaining_micros(self) -> int | None:
        limit = self.resolution.limit_micros
        return None if limit is None else max(0, limit - self.spent_micros)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of SPEC §5 (``GET /users/{name}/usage``)."""
        source = self.resolution.source
        return {
            "user": self.user,
            "enabled": self.enabled,
            "limit_micros": self.resolution.limit_micros,
            "source": None if source is None else source.value,
            "source_group": self.resolution.source_group,
            "period": self.period.kind.value,
            "period_start": self.period.start_at.isoformat().replace("+00:00", "Z"),
            "period_end": self.period.end_at.isoformat().replace("+00:00", "Z"),
            "spent_micros": self.spent_micros,
            "remaining_micros": self.remaining_micros,
        }


def spend_status(
    user: str, config: LimitConfig, resolution: Resolution, period: Period, spent_micros: int
) -> SpendStatus:
    return SpendStatus(user, config.enabled, resolution, period, spent_micros)
