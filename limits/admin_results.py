"""The values the admin service returns and their JSON shape: exactly SPEC §5.

Rule: every JSON object the admin HTTP API or ``spend-proxy ... --json`` prints is built here,
so the two can never drift apart. Money stays integer micro-dollars (``*_micros``); times are
RFC 3339 UTC with a ``Z`` suffix. Records of the ports (``UserRecord``, ``GroupRecord``,
``KeyRecord``) get serializer functions; results born here get a ``to_dict`` method.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from limits.periods import Period
from limits.ports import GroupRecord, KeyRecord, UserRecord
from limits.scopes import LimitConfig

__all__ = [
    "CreatedKey",
    "GroupOverride",
    "LimitsOverview",
    "SpendReport",
    "SpendRow",
    "UserOverride",
    "config_to_dict",
    "group_to_dict",
    "key_to_dict",
    "rfc3339",
    "user_to_dict",
]


def rfc3339(at: datetime | None) -> str | None:
    """``2026-11-18T12:00:00Z`` for a UTC time (the same rendering as ``SpendStatus``)."""
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def user_to_dict(user: UserRecord) -> dict[str, Any]:
    """``{"id", "name", "groups", "created_at"}``."""
    return {
        "id": user.id,
        "name": user.name,
        "groups": list(user.groups),
        "created_at": rfc3339(user.created_at),
    }


def group_to_dict(group: GroupRecord) -> dict[str, Any]:
    """``{"id", "name", "member_count", "limit_micros", "created_at"}``."""
    return {
        "id": group.id,
        "name": group.name,
        "member_count": group.member_count,
        "limit_micros": group.limit_micros,
        "created_at": rfc3339(group.created_at),
    }


def key_to_dict(key: KeyRecord) -> dict[str, Any]:
    """A key as listed (no secret): ``{"id", "user", "prefix", "label", "created_at",
    "revoked_at"}``."""
    return {
        "id": key.id,
        "user": key.user_name,
        "prefix": key.prefix,
        "label": key.label,
        "created_at": rfc3339(key.created_at),
        "revoked_at": rfc3339(key.revoked_at),
    }


def config_to_dict(config: LimitConfig) -> dict[str, Any]:
    """``{"enabled", "period", "default_limit_micros"}`` (the body of ``PUT /limits``)."""
    return {
        "enabled": config.enabled,
        "period": config.period.value,
        "default_limit_micros": config.default_limit_micros,
    }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: the only value that ever holds the plaintext."""

    record: KeyRecord
    key: str

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "key", "prefix", "label", "created_at"}``."""
        return {
            "id": self.record.id,
            "key": self.key,
            "prefix": self.record.prefix,
            "label": self.record.label,
            "created_at": rfc3339(self.record.created_at),
        }


@dataclass(frozen=True, slots=True)
class UserOverride:
    user: str
    limit_micros: int

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "limit_micros": self.limit_micros}


@dataclass(frozen=True, slots=True)
class GroupOverride:
    group: str
    limit_micros: int
    member_count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "limit_micros": self.limit_micros,
            "member_count": self.member_count,
        }


@dataclass(frozen=True, slots=True)
class LimitsOverview:
    """The answer of ``GET /limits``: the config row and every override."""

    config: LimitConfig
    users: tuple[UserOverride, ...]
    groups: tuple[GroupOverride, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **config_to_dict(self.config),
            "users": [override.to_dict() for override in self.users],
            "groups": [override.to_dict() for override in self.groups],
        }


@dataclass(frozen=True, slots=True)
class SpendRow:
    name: str
    cost_micros: int
    calls: int


@dataclass(frozen=True, slots=True)
class SpendReport:
    """The answer of ``GET /spend``: ledger totals for one period, costliest first.

    With ``group_by == "group"`` a call counts once for each group its user is in now, so
    rows may overlap (``limits/store/sql_ledger.py`` rule 4).
    """

    which: str  # "current" | "previous"
    period: Period
    group_by: str  # "user" | "model" | "group"
    rows: tuple[SpendRow, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"which", "period", "period_start", "period_end", "group_by", "rows":
        [{<group_by>: name, "cost_micros", "calls"}]}``."""
        return {
            "which": self.which,
            "period": self.period.kind.value,
            "period_start": rfc3339(self.period.start_at),
            "period_end": rfc3339(self.period.end_at),
            "group_by": self.group_by,
            "rows": [
                {self.group_by: row.name, "cost_micros": row.cost_micros, "calls": row.calls}
                for row in self.rows
            ],
        }
