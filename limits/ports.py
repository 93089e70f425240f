"""The ports ``limits`` talks to storage through (httpcore ``_backends/base.py`` style).

Adapters live in ``limits/store/`` and are named by technology + role (``RedisCounterStore``,
``MemoryCounterStore``, ``SqlStore``). No driver exception crosses a port: adapters raise
``StoreUnavailable`` / ``StoreTimeout`` (``limits.errors``) with ``raise ... from exc``.

Identifiers: users, groups and keys have integer ids (SQL primary keys); names are unique.
All times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from limits.periods import Period
from limits.scopes import LimitConfig
from limits.usage import Usage

__all__ = [
    "AccountsStore",
    "Charge",
    "ChargeSink",
    "Clock",
    "CounterStore",
    "Directory",
    "GroupRecord",
    "KeyRecord",
    "LedgerEntry",
    "LedgerStore",
    "Principal",
    "Spool",
    "UserLimits",
    "UserRecord",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an API key belongs to."""

    user_id: int
    user_name: str
    key_id: int


@dataclass(frozen=True, slots=True)
class UserLimits:
    """A user's own override and the overrides of those of their groups that have one."""

    user_limit_micros: int | None
    group_limits_micros: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One charged call: one row of the ledger, unique by ``request_id``."""

    request_id: str
    user_id: int
    model: str
    upstream: str
    endpoint: str
    usage: Usage
    cost_micros: int
    estimated: bool
    started_at: datetime
    charged_at: datetime


@dataclass(frozen=True, slots=True)
class Charge:
    """What the counters need of a ledger entry (plus the reservation it settles, if any)."""

    request_id: str
    user_id: int
    cost_micros: int
    charged_at: datetime
    reservation_id: str | None = None
    reservation_period: Period | None = None


class CounterStore(Protocol):
    """Per-user per-period spend counters and reservations (the hot path).

    Counters exist for every ``PeriodKind`` at once: a charge adds to the day, week and month
    counters containing ``charged_at``, so changing the configured period takes effect at once.

    A charge is *pending* from :meth:`charge` until :meth:`committed` says the ledger holds it;
    :meth:`rebase` sets a counter to ``ledger total + pending charges in that period`` (the rule
    and its bound are written in ``limits/refresher.py``).
    """

    async def read(self, user_id: int, period: Period) -> tuple[int, int]:
        """``(spent_micros, reserved_micros)`` for one user and period. One round trip."""
        ...

    async def read_spent(self, user_id: int, period: Period) -> int:
        """``spent_micros`` alone (mode ``check`` ignores reservations): one round trip, the
        cheapest the store has."""
        ...

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        """Atomically: if ``limit_micros`` is None or ``spent + reserved < limit_micros``, hold
        ``amount_micros`` under ``reservation_id`` for at most ``ttl_s`` seconds.

        Returns ``(admitted, spent_micros, reserved_micros_before)``. Expired reservations are
        dropped before the check. One round trip.
        """
        ...

    async def release(self, user_id: int, period: Period, reservation_id: str) -> None:
        """Drop a reservation (idempotent)."""
        ...

    async def charge(self, charges: Sequence[Charge]) -> None:
        """Add each charge to its user's day/week/month counters, record it as pending, and
        release the reservation it names. Idempotent per ``request_id`` is not required: the
        caller charges each request once."""
        ...

    async def committed(self, charges: Sequence[Charge]) -> None:
        """The ledger now holds these charges: they are no longer pending."""
        ...

    async def rebase(
        self, user_id: int, ledger_totals: Mapping[Period, int], pending_max_age_s: float
    ) -> None:
        """Set each given period counter to ``ledger total + pending charges inside the period``
        (pending charges older than ``pending_max_age_s`` are dropped first), atomically per
        user."""
        ...

    async def try_lead(self, name: str, ttl_s: float) -> bool:
        """Take a short lease so that one process among replicas does periodic work."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreError`` if the store cannot be reached."""
        ...

    async def close(self) -> None: ...


class LedgerStore(Protocol):
    """The ledger in the SQL database: the source of truth for spend."""

    async def insert(self, entries: Sequence[LedgerEntry]) -> int:
        """Insert rows; a row whose ``request_id`` exists is skipped (idempotent retries).
        Returns the number of rows actually inserted."""
        ...

    async def totals(self, periods: Sequence[Period]) -> dict[int, dict[Period, int]]:
        """Ledger sums per user for each period (by ``charged_at``); users without rows in a
        period map it to 0 if they appear at all."""
        ...

    async def user_total(self, user_id: int, period: Period) -> int: ...

    async def user_ids(self) -> list[int]:
        """Every user id, deleted users' ledger rows notwithstanding."""
        ...


class Directory(Protocol):
    """The read side of accounts that the proxy needs per request (cached above this port)."""

    async def principal_for_key(self, key_hash: str) -> Principal | None:
        """The owner of an active (not revoked) key with this SHA-256 hex digest, else None."""
        ...

    async def limit_config(self) -> LimitConfig: ...

    async def user_limits(self, user_id: int) -> UserLimits: ...

    async def revision(self) -> int:
        """A number that changes whenever accounts, keys or limits change (any writer)."""
        ...


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    groups: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: int
    name: str
    member_count: int
    limit_micros: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    user_name: str
    prefix: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class AccountsStore(Directory, LedgerStore, Protocol):
    """Everything the admin service needs; implemented by the SQL store.

    Write methods bump the revision in the same transaction. Missing targets raise
    ``NotFound``; duplicate names raise ``AlreadyExists``.
    """

    async def create_user(self, name: str, groups: Sequence[str], at: datetime) -> UserRecord: ...
    async def get_user(self, name: str) -> UserRecord: ...
    async def list_users(self) -> list[UserRecord]: ...
    async def delete_user(self, name: str, at: datetime) -> None: ...
    async def create_group(self, name: str, at: datetime) -> GroupRecord: ...
    async def get_group(self, name: str) -> GroupRecord: ...
    async def list_groups(self) -> list[GroupRecord]: ...
    async def delete_group(self, name: str) -> None: ...
    async def add_member(self, group: str, user: str) -> None: ...
    async def remove_member(self, group: str, user: str) -> None: ...
    async def create_key(
        self, user: str, key_hash: str, prefix: str, label: str | None, at: datetime
    ) -> KeyRecord: ...
    async def list_keys(self, user: str) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id: int, at: datetime) -> None: ...
    async def set_limit_config(self, config: LimitConfig) -> None: ...
    async def set_user_limit(self, user: str, limit_micros: int | None) -> None: ...
    async def set_group_limit(self, group: str, limit_micros: int | None) -> None: ...
    async def user_overrides(self) -> list[tuple[str, int]]: ...
    async def spend(self, period: Period, group_by: str) -> list[tuple[str, int, int]]:
        """``(name, cost_micros, calls)`` per user / model / group for one period."""
        ...


class ChargeSink(Protocol):
    """Takes a settled call off the request path: counters first, then the ledger."""

    def submit(self, entry: LedgerEntry, charge: Charge) -> None:
        """Queue one charged call; never blocks, never raises."""
        ...


class Spool(Protocol):
    """Durable local overflow for ledger rows the database could not take (SPEC §8 inv. 3)."""

    def append(self, entries: Sequence[LedgerEntry]) -> None: ...
    def read(self) -> list[LedgerEntry]: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
