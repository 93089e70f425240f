"""The SQL tables, as SQLAlchemy Core declarations shared by queries (``sql_*.py``).

Rules
1. One schema for PostgreSQL and SQLite. Ids are BIGINT on Postgres and INTEGER on SQLite (the
   only type SQLite auto-increments); money is BIGINT micro-dollars; times are :class:`UtcDateTime`.
2. These declarations describe the schema *as migrated to the latest version*; the DDL that gets
   there lives, frozen per version, in ``limits/store/migrations.py``, and a test checks the two
   agree. Tables are declarations, never mutated after import.
3. Users are soft-deleted (``deleted_at``): a deleted user's ledger rows keep their ``user_id``
   (SPEC §5 "ledger kept") and the name is free again, because the name is unique only among
   live users (a partial unique index, supported by both dialects).
4. ``ledger.user_id`` deliberately has no foreign key: the ledger is the record of what was
   charged and must never be blocked or cascaded by account changes.
5. ``limit_config`` and ``meta`` hold exactly one row (``id = 1``), created by the first migration.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
)

__all__ = [
    "ID_TYPE",
    "UtcDateTime",
    "api_keys",
    "group_limits",
    "groups",
    "ledger",
    "limit_config",
    "memberships",
    "meta",
    "metadata",
    "schema_migrations",
    "user_limits",
    "users",
]

NAME_LENGTH = 64
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both dialects.

    Postgres stores ``timestamptz``. SQLite has no time type: SQLAlchemy stores fixed-width ISO
    text, so values are normalised to naive UTC on the way in (text compares in time order) and
    tagged UTC on the way out. Naive datetimes are refused: they have no UTC meaning.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store takes timezone-aware UTC times only")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="meta_single_row"),
)

users = Table(
    "users",
    metadata,
    Column("id", ID_TYPE, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
)
Index(
    "uq_users_live_name",
    users.c.name,
    unique=True,
    postgresql_where=users.c.deleted_at.is_(None),
    sqlite_where=users.c.deleted_at.is_(None),
)

groups = Table(
    "groups",
    metadata,
    Column("id", ID_TYPE, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("group_id", ID_TYPE, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID_TYPE, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)
Index("ix_memberships_user", memberships.c.user_id)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID_TYPE, primary_key=True),
    Column("user_id", ID_TYPE, ForeignKey("users.id"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("label", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

limit_config = Table(
    "limit_config",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("enabled", Boolean, nullable=False),
    Column("period", String(8), nullable=False),
    Column("default_limit_micros", BigInteger, nullable=True),
    CheckConstraint("id = 1", name="limit_config_single_row"),
)

user_limits = Table(
    "user_limits",
    metadata,
    Column("user_id", ID_TYPE, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("limit_micros", BigInteger, nullable=False),
)

group_limits = Table(
    "group_limits",
    metadata,
    Column("group_id", ID_TYPE, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("limit_micros", BigInteger, nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", ID_TYPE, primary_key=True),
    Column("request_id", String(128), nullable=False, unique=True),
    Column("user_id", ID_TYPE, nullable=False),
    Column("model", String(200), nullable=False),
    Column("upstream", String(100), nullable=False),
    Column("endpoint", String(200), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("charged_at", UtcDateTime, nullable=False),
)
Index("ix_ledger_charged_user", ledger.c.charged_at, ledger.c.user_id)
