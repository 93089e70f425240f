"""``SqlStore``: the SQL database behind the ``AccountsStore`` port (SPEC §8: source of truth).

One code path for PostgreSQL (asyncpg) and SQLite (aiosqlite) over SQLAlchemy Core async.
The queries live beside it, one module per concept: ``sql_accounts`` (users, groups, keys),
``sql_limits`` (limit config, overrides, revision), ``sql_ledger`` (ledger); the tables in
``schema``; connecting and error mapping in ``sql_engine``; DDL in ``migrations``.

Rules
1. Each method is one transaction. Admin writes run in a write transaction that also bumps
   ``meta.revision`` (design.md "Caches and invalidation"); a failed write changes nothing.
2. No SQLAlchemy, asyncpg, aiosqlite or OS error leaves this package: they become
   ``StoreUnavailable`` / ``StoreTimeout`` / ``StoreError``. Admin errors are ``NotFound`` /
   ``AlreadyExists``. All times in and out are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from limits.periods import Period
from limits.ports import GroupRecord, KeyRecord, LedgerEntry, Principal, UserLimits, UserRecord
from limits.scopes import LimitConfig
from limits.store import sql_accounts as accounts
from limits.store import sql_ledger as ledger
from limits.store import sql_limits as limits
from limits.store.migrations import Progress, current_version, migrate
from limits.store.sql_engine import create_engine, map_errors, single_statement, transaction

__all__ = ["SqlStore"]


class SqlStore:
    """Implements ``limits.ports.AccountsStore``. Build with :meth:`connect`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def connect(cls, url: str) -> SqlStore:
        """A store for ``sqlite:///path``, ``sqlite:///:memory:`` or ``postgresql://...``.

        Connects lazily (the first query opens the pool). Raises ``ConfigError`` for a URL of
        an unsupported database.
        """
        return cls(create_engine(url))

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._engine.dialect.name

    async def migrate(self, progress: Progress | None = None) -> list[int]:
        """Bring the schema up to date (idempotent, concurrency-safe); the versions applied."""
        return await migrate(self._engine, progress)

    async def schema_version(self) -> int:
        """The schema version the database is at (0: never migrated)."""
        return await current_version(self._engine)

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers."""
        async with transaction(self._engine) as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        with map_errors():
            await self._engine.dispose()

    @asynccontextmanager
    async def _admin_write(self) -> AsyncIterator[AsyncConnection]:
        async with transaction(self._engine, write=True) as conn:
            yield conn
            await limits.bump_revision(conn)

    # -- Directory -------------------------------------------------------------------------

    async def principal_for_key(self, key_hash: str) -> Principal | None:
        async with transaction(self._engine) as conn:
            return await accounts.principal_for_key(conn, key_hash)

    async def limit_config(self) -> LimitConfig:
        async with transaction(self._engine) as conn:
            return await limits.get_limit_config(conn)

    async def user_limits(self, user_id: int) -> UserLimits:
        async with transaction(self._engine) as conn:
            return await limits.get_user_limits(conn, user_id)

    async def revision(self) -> int:
        async with single_statement(self._engine) as conn:  # every second: kept cheap
            return await limits.revision(conn)

    # -- LedgerStore -----------------------------------------------------------------------

    async def insert(self, entries: Sequence[LedgerEntry]) -> int:
        """Insert ledger rows idempotently (by ``request_id``); returns rows actually new."""
        if not entries:
            return 0
        async with single_statement(self._engine, write=True) as conn:  # one statement per batch
            return await ledger.insert_entries(conn, entries)

    async def totals(self, periods: Sequence[Period]) -> dict[int, dict[Period, int]]:
        async with transaction(self._engine) as conn:
            return await ledger.totals(conn, periods)

    async def user_total(self, user_id: int, period: Period) -> int:
        async with transaction(self._engine) as conn:
            return await ledger.user_total(conn, user_id, period)

    async def user_ids(self) -> list[int]:
        async with transaction(self._engine) as conn:
            return await ledger.user_ids(conn)

    async def spend(self, period: Period, group_by: str) -> list[tuple[str, int, int]]:
        async with transaction(self._engine) as conn:
            return await ledger.spend(conn, period, group_by)

    # -- accounts --------------------------------------------------------------------------

    async def create_user(self, name: str, groups: Sequence[str], at: datetime) -> UserRecord:
        """Create a user in existing groups; an unknown group raises ``NotFound``."""
        async with self._admin_write() as conn:
            return await accounts.create_user(conn, name, groups, at)

    async def get_user(self, name: str) -> UserRecord:
        async with transaction(self._engine) as conn:
            return await accounts.get_user(conn, name)

    async def list_users(self) -> list[UserRecord]:
        async with transaction(self._engine) as conn:
            return await accounts.list_users(conn)

    async def delete_user(self, name: str, at: datetime) -> None:
        async with self._admin_write() as conn:
            await accounts.delete_user(conn, name, at)

    async def create_group(self, name: str, at: datetime) -> GroupRecord:
        async with self._admin_write() as conn:
            return await accounts.create_group(conn, name, at)

    async def get_group(self, name: str) -> GroupRecord:
        async with transaction(self._engine) as conn:
            return await accounts.get_group(conn, name)

    async def list_groups(self) -> list[GroupRecord]:
        async with transaction(self._engine) as conn:
            return await accounts.list_groups(conn)

    async def delete_group(self, name: str) -> None:
        async with self._admin_write() as conn:
            await accounts.delete_group(conn, name)

    async def add_member(self, group: str, user: str) -> None:
        async with self._admin_write() as conn:
            await accounts.add_member(conn, group, user)

    async def remove_member(self, group: str, user: str) -> None:
        async with self._admin_write() as conn:
            await accounts.remove_member(conn, group, user)

    async def create_key(
        self, user: str, key_hash: str, prefix: str, label: str | None, at: datetime
    ) -> KeyRecord:
        async with self._admin_write() as conn:
            return await accounts.create_key(conn, user, key_hash, prefix, label, at)

    async def list_keys(self, user: str) -> list[KeyRecord]:
        async with transaction(self._engine) as conn:
            return await accounts.list_keys(conn, user)

    async def revoke_key(self, key_id: int, at: datetime) -> None:
        async with self._admin_write() as conn:
            await accounts.revoke_key(conn, key_id, at)

    # -- limits ----------------------------------------------------------------------------

    async def set_limit_config(self, config: LimitConfig) -> None:
        async with self._admin_write() as conn:
            await limits.set_limit_config(conn, config)

    async def set_user_limit(self, user: str, limit_micros: int | None) -> None:
        """Set a user's override, or clear it with None (``NotFound`` if there is none)."""
        async with self._admin_write() as conn:
            await limits.set_user_limit(conn, user, limit_micros)

    async def set_group_limit(self, group: str, limit_micros: int | None) -> None:
        """Set a group's override, or clear it with None (``NotFound`` if there is none)."""
        async with self._admin_write() as conn:
            await limits.set_group_limit(conn, group, limit_micros)

    async def user_overrides(self) -> list[tuple[str, int]]:
        async with transaction(self._engine) as conn:
            return await limits.user_overrides(conn)
