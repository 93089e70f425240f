"""Opening the SQL database: URL translation, engine options, transactions, error mapping.

Rules
1. Callers give plain URLs (``sqlite:///path``, ``sqlite:///:memory:``, ``postgresql://...``);
   this module picks the asyncio driver (aiosqlite, asyncpg), so one code path serves both.
2. SQLite: Python's sqlite3 driver opens transactions lazily and never for DDL; we turn that off
   and emit ``BEGIN`` ourselves (SQLAlchemy's documented recipe), so DDL is transactional and
   write transactions start ``BEGIN IMMEDIATE``: a writer takes the lock first and waits for it
   (busy timeout) instead of failing on a read-to-write upgrade. WAL lets readers run beside the
   writer, and foreign keys are enforced as on Postgres.
3. :func:`map_errors` is the only exit for driver errors: every SQLAlchemy, asyncpg or OS error
   leaves as a ``StoreError`` (``raise ... from exc``): ``StoreTimeout`` for timeouts and lock
   waits, plain ``StoreError`` for errors of the statement itself (integrity, syntax, data:
   retrying cannot help), ``StoreUnavailable`` for everything else (refused, dropped, missing
   database or table). ``limits`` errors raised inside a transaction pass through unchanged.
4. Postgres connections are in autocommit mode unless :func:`transaction` opens one (``BEGIN``
   ... ``COMMIT``). A pooled connection is pinged before use (``pool_pre_ping``, so a restarted
   server costs no failed call); asyncpg wraps that ping in ``BEGIN``/``ROLLBACK`` unless the
   connection is in autocommit mode, so this keeps a ping at one round trip, and lets
   :func:`single_statement` run one statement (the 1 s revision poll, a ledger batch) in two
   round trips instead of six. SQLite always takes a transaction: it is local, and a batch of
   rows must share one commit (one fsync).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import URL, Table, event, exc, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from limits.errors import ConfigError, LimitsError, StoreError, StoreTimeout, StoreUnavailable

__all__ = [
    "async_url",
    "create_engine",
    "map_errors",
    "single_statement",
    "transaction",
    "upsert_insert",
]

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_ALIASES = {"postgres": "postgresql"}
_SQLITE_BUSY_TIMEOUT_S = 30.0
_PG_CONNECT_TIMEOUT_S = 10.0
_PG_COMMAND_TIMEOUT_S = 60.0
_BEGIN_OPTION = "spend_proxy_sqlite_begin"
_PG_TRANSACTION_ISOLATION = "READ COMMITTED"  # Postgres's default, set where a BEGIN is wanted
# Errors that mean "this statement is wrong", not "the database is unwell": retrying won't help.
_BUG_ERRORS = (exc.IntegrityError, exc.ProgrammingError, exc.DataError, exc.NotSupportedError)


def async_url(url: str) -> URL:
    """Translate a plain database URL to its asyncio driver. Raises ``ConfigError``."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise ConfigError(f"not a database URL: {url!r}") from error
    backend = _ALIASES.get(parsed.get_backend_name(), parsed.get_backend_name())
    if backend not in _DRIVERS:
        raise ConfigError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    parsed = parsed.set(drivername=_DRIVERS[backend])
    if backend == "postgresql" and "sslmode" in parsed.query:
        # libpq spells it sslmode; asyncpg takes the same values as ``ssl``.
        sslmode = parsed.query["sslmode"]
        parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": sslmode})
    return parsed


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` with the options of the module docstring. Does no I/O."""
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        options: dict[str, Any] = {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
        path = target.database
        if path and path != ":memory:" and not target.query:
            options = {"async_creator": partial(_open_sqlite_file, path)}
        engine = create_async_engine(target, **options)
        _install_sqlite_hooks(engine)
        return engine
    connect_args = {"timeout": _PG_CONNECT_TIMEOUT_S, "command_timeout": _PG_COMMAND_TIMEOUT_S}
    return create_async_engine(
        target, pool_pre_ping=True, isolation_level="AUTOCOMMIT", connect_args=connect_args
    )


def _probe_sqlite_file(path: str) -> None:
    sqlite3.connect(path).close()


async def _open_sqlite_file(path: str) -> Any:
    """Open an aiosqlite connection to a database file.

    aiosqlite reports a failed open from its worker thread *after* the caller has seen the
    error; when the event loop is gone by then (a CLI run ending on that error) the thread dies
    with a traceback on stderr. Opening the file once first, in a thread asyncio joins, surfaces
    the error here instead, before aiosqlite starts a thread at all.
    """
    await asyncio.to_thread(_probe_sqlite_file, path)
    connection = aiosqlite.connect(path, timeout=_SQLITE_BUSY_TIMEOUT_S)
    # As SQLAlchemy's own aiosqlite dialect does: a connection never closed must not keep the
    # interpreter from exiting.
    worker = getattr(connection, "_thread", None)
    if worker is not None:
        worker.daemon = True
    return await connection


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (rule 2)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


@contextmanager
def map_errors() -> Iterator[None]:
    """Turn driver and OS errors into ``StoreError`` subclasses (rule 3)."""
    try:
        yield
    except LimitsError:
        raise
    except (exc.TimeoutError, TimeoutError) as error:
        raise StoreTimeout(f"database timed out: {_describe(error)}") from error
    except exc.DBAPIError as error:
        text = _describe(error.orig if error.orig is not None else error)
        if "locked" in text or "canceling statement" in text:
            raise StoreTimeout(f"database busy: {text}") from error
        if isinstance(error, _BUG_ERRORS) and not error.connection_invalidated:
            raise StoreError(f"database error: {text}") from error
        raise StoreUnavailable(f"database unavailable: {text}") from error
    except exc.SQLAlchemyError as error:
        raise StoreError(f"database error: {_describe(error)}") from error
    except OSError as error:
        raise StoreUnavailable(f"database unavailable: {_describe(error)}") from error


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


@asynccontextmanager
async def transaction(
    engine: AsyncEngine, *, write: bool = False
) -> AsyncIterator[AsyncConnection]:
    """One transaction, committed when the block ends without an exception, else rolled back.

    ``write=True`` takes SQLite's write lock at BEGIN (rule 2). Raises ``StoreError``.
    """
    with map_errors():
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execution_options(isolation_level=_PG_TRANSACTION_ISOLATION)
            elif write:
                await conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            async with conn.begin():
                yield conn


@asynccontextmanager
async def single_statement(
    engine: AsyncEngine, *, write: bool = False
) -> AsyncIterator[AsyncConnection]:
    """A connection for ONE statement: autocommit on Postgres (rule 4), where a statement is
    atomic by itself; a :func:`transaction` on SQLite. Raises ``StoreError``."""
    if engine.dialect.name != "postgresql":
        async with transaction(engine, write=write) as conn:
            yield conn
        return
    with map_errors():
        async with engine.connect() as conn:
            yield conn


def upsert_insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ``ON CONFLICT`` in the connection's dialect: Postgres and SQLite
    spell it identically, but SQLAlchemy builds it from each dialect's own ``insert``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
