"""Versioned schema migrations, written in SQLAlchemy Core DDL so they run on both dialects.

How it works
1. ``schema_migrations(version, name, applied_at)`` records every applied step.
2. :func:`migrate` opens ONE transaction, takes a lock, reads the applied versions and applies
   the missing steps in order, recording each. DDL is transactional on Postgres and (with the
   BEGIN recipe of ``sql_engine``) on SQLite, so a failed step leaves nothing half done.
3. Two processes migrating at once: on Postgres the first takes a transaction-scoped advisory
   lock (``pg_advisory_xact_lock``) and the second waits for it, then finds nothing to do; on
   SQLite ``BEGIN IMMEDIATE`` serialises them the same way.
4. Steps are frozen once released: each builds its own ``MetaData`` describing the tables *at
   that version*, never importing ``schema.py`` tables (which describe the latest version). A
   schema change is a new step appended to :data:`STEPS`, plus the matching edit of ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from limits.store.schema import ID_TYPE, UtcDateTime, schema_migrations
from limits.store.sql_engine import transaction

__all__ = ["STEPS", "Progress", "Step", "current_version", "migrate"]

Progress = Callable[[str], None]

# An arbitrary, fixed 64-bit key naming "spend-proxy schema migrations" among advisory locks.
_PG_LOCK_KEY = 0x5350_4D49_4752_0001


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    """Version 1: accounts, keys, limits, ledger and meta; seeds the two single-row tables."""
    md = MetaData()
    _v1_accounts(md)
    _v1_limits(md)
    _v1_ledger(md)
    md.create_all(conn)
    conn.execute(insert(md.tables["meta"]).values(id=1, revision=0))
    conn.execute(
        insert(md.tables["limit_config"]).values(
            id=1, enabled=False, period="month", default_limit_micros=None
        )
    )


def _v1_accounts(md: MetaData) -> None:
    Table(
        "meta",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("revision", BigInteger, nullable=False),
        CheckConstraint("id = 1", name="meta_single_row"),
    )
    users = Table(
        "users",
        md,
        Column("id", ID_TYPE, primary_key=True),
        Column("name", String(64), nullable=False),
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
    Table(
        "groups",
        md,
        Column("id", ID_TYPE, primary_key=True),
        Column("name", String(64), nullable=False, unique=True),
        Column("created_at", UtcDateTime, nullable=False),
    )
    members = Table(
        "memberships",
        md,
        Column("group_id", ID_TYPE, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
        Column("user_id", ID_TYPE, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    )
    Index("ix_memberships_user", members.c.user_id)
    Table(
        "api_keys",
        md,
        Column("id", ID_TYPE, primary_key=True),
        Column("user_id", ID_TYPE, ForeignKey("users.id"), nullable=False, index=True),
        Column("key_hash", String(64), nullable=False, unique=True),
        Column("prefix", String(16), nullable=False),
        Column("label", String(200), nullable=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("revoked_at", UtcDateTime, nullable=True),
    )


def _v1_limits(md: MetaData) -> None:
    Table(
        "limit_config",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("enabled", Boolean, nullable=False),
        Column("period", String(8), nullable=False),
        Column("default_limit_micros", BigInteger, nullable=True),
        CheckConstraint("id = 1", name="limit_config_single_row"),
    )
    for owner in ("user", "group"):
        Table(
            f"{owner}_limits",
            md,
            Column(
                f"{owner}_id",
                ID_TYPE,
                ForeignKey(f"{owner}s.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            Column("limit_micros", BigInteger, nullable=False),
        )


def _v1_ledger(md: MetaData) -> None:
    tokens = ("input", "output", "cache_read", "cache_write", "reasoning")
    ledger = Table(
        "ledger",
        md,
        Column("id", ID_TYPE, primary_key=True),
        Column("request_id", String(128), nullable=False, unique=True),
        Column("user_id", ID_TYPE, nullable=False),
        Column("model", String(200), nullable=False),
        Column("upstream", String(100), nullable=False),
        Column("endpoint", String(200), nullable=False),
        *(Column(f"{kind}_tokens", BigInteger, nullable=False) for kind in tokens),
        Column("cost_micros", BigInteger, nullable=False),
        Column("estimated", Boolean, nullable=False),
        Column("started_at", UtcDateTime, nullable=False),
        Column("charged_at", UtcDateTime, nullable=False),
    )
    Index("ix_ledger_charged_user", ledger.c.charged_at, ledger.c.user_id)


STEPS: tuple[Step, ...] = (Step(1, "initial schema", _v1_initial),)


async def migrate(engine: AsyncEngine, progress: Progress | None = None) -> list[int]:
    """Bring the schema to the latest version; returns the versions applied now (maybe none).

    Idempotent and safe to run from several processes at once (module docstring, rule 3).
    ``progress`` receives one human-readable line per step. Raises ``StoreError``.
    """
    report = progress or (lambda _line: None)
    async with transaction(engine, write=True) as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        await conn.run_sync(lambda sync: schema_migrations.create(sync, checkfirst=True))
        done = set((await conn.execute(select(schema_migrations.c.version))).scalars())
        applied = [step for step in STEPS if step.version not in done]
        for step in applied:
            report(f"applying migration {step.version}: {step.name}")
            await _apply(conn, step)
        latest = max((step.version for step in STEPS), default=0)
        report(f"schema is at version {latest}")
    return [step.version for step in applied]


async def current_version(engine: AsyncEngine) -> int:
    """The highest applied version (0 for an empty database). Raises ``StoreError``."""
    async with transaction(engine) as conn:
        exists = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "schema_migrations"))
        if not exists:
            return 0
        return int(await conn.scalar(select(func.max(schema_migrations.c.version))) or 0)


async def _apply(conn: AsyncConnection, step: Step) -> None:
    await conn.run_sync(step.apply)
    await conn.execute(
        insert(schema_migrations).values(
            version=step.version, name=step.name, applied_at=func.current_timestamp()
        )
    )
