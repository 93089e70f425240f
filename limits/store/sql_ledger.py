"""Ledger queries: idempotent batch inserts, per-period totals and spend reports.

Rules
1. A row is unique by ``request_id``. :func:`insert_entries` inserts with ``ON CONFLICT
   (request_id) DO NOTHING``, so a retried batch inserts each call at most once (SPEC §8
   invariant 2), and counts what was new.
5. Inserts use ONE statement text whatever the batch size. Drivers cache prepared statements by
   text (asyncpg 100 per connection, sqlite3 128), and SQLAlchemy's "insertmanyvalues" renders
   a multi-row ``VALUES`` text per batch size: every new size used to prepare (and keep) one
   more, ever larger, statement. Postgres: ``INSERT ... SELECT ... FROM json_to_recordset($1)
   ... RETURNING id``: the batch travels as ONE JSON text (orjson, in C; per-column arrays cost
   asyncpg an ``isinstance`` against ``collections.abc`` per element), one execute of one
   prepared statement; the returned ids count the new rows. SQLite likewise reads one JSON
   text with ``json_each`` (SQLAlchemy's executemany would process every parameter of every
   row in Python), times written exactly as SQLAlchemy stores them (:func:`_sqlite_time`); its
   rowcount counts the new rows.
2. :func:`totals` answers every period in ONE query: conditional sums over the widest window,
   served by the ``(charged_at, user_id)`` index.
3. Periods are half-open ``[start_at, end_at)`` by ``charged_at`` (``limits.periods``).
4. Reports by group count a row for each group its user belongs to *now* (membership today, not
   at charge time), so group totals may overlap and need not add up to the user total.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    TextClause,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from limits.errors import InvalidValue
from limits.periods import Period
from limits.ports import LedgerEntry
from limits.store.schema import UtcDateTime, groups, ledger, memberships, users

__all__ = ["GROUP_BY", "insert_entries", "spend", "totals", "user_ids", "user_total"]

GROUP_BY = ("user", "model", "group")


def _row(entry: LedgerEntry) -> dict[str, Any]:
    usage = entry.usage
    return {
        "request_id": entry.request_id,
        "user_id": entry.user_id,
        "model": entry.model,
        "upstream": entry.upstream,
        "endpoint": entry.endpoint,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_micros": entry.cost_micros,
        "estimated": entry.estimated,
        "started_at": entry.started_at,
        "charged_at": entry.charged_at,
    }


_COLUMNS = (  # the ledger columns a row sets, in _row() order
    "request_id",
    "user_id",
    "model",
    "upstream",
    "endpoint",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "estimated",
    "started_at",
    "charged_at",
)


def _pg_type(column: str) -> str:
    """The Postgres type a JSON field of ``column`` is read as."""
    column_type = ledger.c[column].type
    if isinstance(column_type, String):
        return "varchar"
    if isinstance(column_type, Boolean):
        return "boolean"
    if isinstance(column_type, UtcDateTime):
        return "timestamptz"
    return "bigint"


def _pg_json_insert() -> TextClause:
    """Rule 5: one statement text for every batch size; the rows come as one JSON array."""
    names = ", ".join(_COLUMNS)
    record = ", ".join(f"{column} {_pg_type(column)}" for column in _COLUMNS)
    statement = text(
        f"INSERT INTO ledger ({names}) SELECT {names} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS r({record}) "
        "ON CONFLICT (request_id) DO NOTHING RETURNING id"
    )
    return statement.bindparams(bindparam("rows", type_=String()))


_PG_INSERT = _pg_json_insert()


def _sqlite_json_insert() -> TextClause:
    """Rule 5 on SQLite: one statement text, the rows as one JSON array (``json_each``)."""
    names = ", ".join(_COLUMNS)
    values = ", ".join(f"value ->> '{column}'" for column in _COLUMNS)
    statement = text(
        f"INSERT INTO ledger ({names}) SELECT {values} FROM json_each(:rows) "
        "WHERE true ON CONFLICT (request_id) DO NOTHING"  # WHERE: SQLite's upsert-parse rule
    )
    return statement.bindparams(bindparam("rows", type_=String()))


_SQLITE_INSERT = _sqlite_json_insert()


def _aware(at: datetime) -> datetime:
    """``at``, unless it is naive (no UTC meaning). Raises ``ValueError``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime: the store takes timezone-aware UTC times only")
    return at


def _sqlite_time(at: datetime) -> str:
    """``at`` as ``UtcDateTime`` stores it on SQLite: naive UTC, SQLAlchemy's fixed-width text
    (``YYYY-MM-DD HH:MM:SS.ffffff``), so text order is time order."""
    return _aware(at).astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _rows_json(conn: AsyncConnection, rows: list[dict[str, Any]]) -> str:
    """The rows as one JSON array; times RFC 3339 with offset (Postgres) or as SQLite stores
    them. Naive times are refused, as ``UtcDateTime`` does."""
    time_text = _aware if conn.dialect.name == "postgresql" else _sqlite_time
    for row in rows:
        row["started_at"] = time_text(row["started_at"])
        row["charged_at"] = time_text(row["charged_at"])
    return orjson.dumps(rows).decode()


async def insert_entries(conn: AsyncConnection, entries: Sequence[LedgerEntry]) -> int:
    """Insert new rows, skip known request ids; returns how many rows were inserted."""
    unique = {entry.request_id: entry for entry in reversed(entries)}  # first occurrence wins
    if not unique:
        return 0
    rows = _rows_json(conn, [_row(entry) for entry in unique.values()])
    if conn.dialect.name == "postgresql":
        return len((await conn.execute(_PG_INSERT, {"rows": rows})).all())
    return (await conn.execute(_SQLITE_INSERT, {"rows": rows})).rowcount


def _within(period: Period) -> ColumnElement[bool]:
    return and_(ledger.c.charged_at >= period.start_at, ledger.c.charged_at < period.end_at)


async def totals(conn: AsyncConnection, periods: Sequence[Period]) -> dict[int, dict[Period, int]]:
    """Per user with rows in the widest window: the sum of ``cost_micros`` in each period."""
    if not periods:
        return {}
    window = Period(
        periods[0].kind, min(p.start_at for p in periods), max(p.end_at for p in periods)
    )
    sums = [
        func.coalesce(func.sum(case((_within(p), ledger.c.cost_micros), else_=0)), 0)
        for p in periods
    ]
    query = select(ledger.c.user_id, *sums).where(_within(window)).group_by(ledger.c.user_id)
    found: dict[int, dict[Period, int]] = {}
    for row in await conn.execute(query):
        found[int(row[0])] = {period: int(row[i + 1]) for i, period in enumerate(periods)}
    return found


async def user_total(conn: AsyncConnection, uid: int, period: Period) -> int:
    query = select(func.coalesce(func.sum(ledger.c.cost_micros), 0)).where(
        ledger.c.user_id == uid, _within(period)
    )
    return int(await conn.scalar(query) or 0)


async def user_ids(conn: AsyncConnection) -> list[int]:
    """Ids of live users (deleted users keep ledger rows but need no counters)."""
    query = select(users.c.id).where(users.c.deleted_at.is_(None)).order_by(users.c.id)
    return [int(uid) for uid in (await conn.execute(query)).scalars()]


async def spend(conn: AsyncConnection, period: Period, group_by: str) -> list[tuple[str, int, int]]:
    """``(name, cost_micros, calls)`` per user, model or group in ``period``, costliest first.

    Raises ``InvalidValue`` for an unknown ``group_by``.
    """
    if group_by not in GROUP_BY:
        raise InvalidValue("group_by", f"must be one of {', '.join(GROUP_BY)}")
    cost = func.coalesce(func.sum(ledger.c.cost_micros), 0)
    if group_by == "model":
        key: ColumnElement[str] = ledger.c.model
        source: Any = ledger
    elif group_by == "user":
        # A row whose user row vanished still counts, under a stand-in name.
        key = func.coalesce(users.c.name, literal("user#") + cast(ledger.c.user_id, String))
        source = ledger.outerjoin(users, users.c.id == ledger.c.user_id)
    else:
        key = groups.c.name
        source = ledger.join(memberships, memberships.c.user_id == ledger.c.user_id).join(
            groups, groups.c.id == memberships.c.group_id
        )
    query = (
        select(key, cost, func.count())
        .select_from(source)
        .where(_within(period))
        .group_by(key)
        .order_by(cost.desc(), key)
    )
    return [(str(name), int(total), int(calls)) for name, total, calls in await conn.execute(query)]
