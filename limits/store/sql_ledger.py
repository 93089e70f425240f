"""Ledger queries: idempotent batch inserts, per-period totals and spend reports.

Rules
1. A row is unique by ``request_id``. :func:`insert_entries` inserts with ``ON CONFLICT
   (request_id) DO NOTHING``, so a retried batch inserts each call at most once (SPEC §8
   invariant 2), and counts what was new.
5. Inserts use ONE statement text whatever the batch size. Drivers cache prepared statements by
   text (asyncpg 100 per connection, sqlite3 128), and SQLAlchemy's "insertmanyvalues" renders
   a multi-row ``VALUES`` text per batch size: every new size used to prepare (and keep) one
   more, ever larger, statement. Postgres: ``INSERT ... SELECT * FROM unnest($1::varchar[],
   ...) ... RETURNING id``, one array per column, so a batch is one execute of one prepared
   statement; the returned ids count the new rows. SQLite: ``executemany`` of the one-row
   statement (sqlite3 loops in C over one prepared statement); its rowcount is the new rows.
2. :func:`totals` answers every period in ONE query: conditional sums over the widest window,
   served by the ``(charged_at, user_id)`` index.
3. Periods are half-open ``[start_at, end_at)`` by ``charged_at`` (``limits.periods``).
4. Reports by group count a row for each group its user belongs to *now* (membership today, not
   at charge time), so group totals may overlap and need not add up to the user total.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from limits.errors import InvalidValue
from limits.periods import Period
from limits.ports import LedgerEntry
from limits.store.schema import UtcDateTime, groups, ledger, memberships, users
from limits.store.sql_engine import upsert_insert

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


def _pg_array_type(column: str) -> TypeEngine[Any]:
    """The Postgres array type of one ledger column (``varchar[]``, ``bigint[]``, ...)."""
    column_type = ledger.c[column].type
    if isinstance(column_type, String):
        return ARRAY(String())
    if isinstance(column_type, Boolean):
        return ARRAY(Boolean())
    if isinstance(column_type, UtcDateTime):
        return ARRAY(UtcDateTime())
    return ARRAY(BigInteger())


def _pg_unnest_insert() -> TextClause:
    """Rule 5: one text for every batch size; each column comes as one typed array."""
    names = ", ".join(_COLUMNS)
    arrays = ", ".join(f":{column}" for column in _COLUMNS)
    statement = text(
        f"INSERT INTO ledger ({names}) SELECT * FROM unnest({arrays}) "
        "ON CONFLICT (request_id) DO NOTHING RETURNING id"
    )
    return statement.bindparams(
        *(bindparam(column, type_=_pg_array_type(column)) for column in _COLUMNS)
    )


_PG_INSERT = _pg_unnest_insert()


async def insert_entries(conn: AsyncConnection, entries: Sequence[LedgerEntry]) -> int:
    """Insert new rows, skip known request ids; returns how many rows were inserted."""
    unique = {entry.request_id: entry for entry in reversed(entries)}  # first occurrence wins
    if not unique:
        return 0
    rows = [_row(entry) for entry in unique.values()]
    if conn.dialect.name == "postgresql":
        columns = {column: [row[column] for row in rows] for column in _COLUMNS}
        result = await conn.execute(_PG_INSERT, columns)
        return len(result.all())
    stmt = upsert_insert(conn, ledger).on_conflict_do_nothing(index_elements=[ledger.c.request_id])
    return (await conn.execute(stmt, rows)).rowcount  # executemany: one statement, summed counts


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
