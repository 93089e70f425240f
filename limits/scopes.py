"""Limit resolution: which spend limit applies to a person, and where it came from (SPEC §2).

Rules, in order, for user U:
1. The limit config is disabled -> unlimited; every override is ignored.
2. U has an override -> that override, even when a group's is lower ("user" wins outright).
3. Some of U's groups have an override -> the **minimum** of those ("group", naming the group;
   ties go to the group whose name sorts first, so the answer is deterministic).
4. A default limit is configured -> the default ("default").
5. Otherwise unlimited (``limit_micros is None``, ``source is None``).
A limit of 0 is a real limit: it blocks all spend.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from limits.periods import PeriodKind

__all__ = ["LimitConfig", "Resolution", "Source", "resolve"]


class Source(enum.StrEnum):
    USER = "user"
    GROUP = "group"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """The single, run-time editable limit configuration row."""

    enabled: bool = False
    period: PeriodKind = PeriodKind.MONTH
    default_limit_micros: int | None = None

    def __post_init__(self) -> None:
        # Storage hands back the period as text ("week"): make it the enum member, so that
        # identity tests on it hold, and reject a name that is no period at construction.
        object.__setattr__(self, "period", PeriodKind(self.period))


@dataclass(frozen=True, slots=True)
class Resolution:
    limit_micros: int | None
    source: Source | None
    source_group: str | None = None

    @property
    def unlimited(self) -> bool:
        return self.limit_micros is None


UNLIMITED = Resolution(None, None)


def resolve(
    config: LimitConfig,
    user_limit_micros: int | None,
    group_limits_micros: Mapping[str, int],
) -> Resolution:
    """Resolve the effective limit for one user.

    ``group_limits_micros`` maps the names of the user's groups *that have an override* to
    their limit. Returns a :class:`Resolution`; never raises.
    """
    if not config.enabled:
        return UNLIMITED
    if user_limit_micros is not None:
        return Resolution(user_limit_micros, Source.USER)
    if group_limits_micros:
        group = min(group_limits_micros, key=lambda name: (group_limits_micros[name], name))
        return Resolution(group_limits_micros[group], Source.GROUP, group)
    if config.default_limit_micros is not None:
        return Resolution(config.default_limit_micros, Source.DEFAULT)
    return UNLIMITED
