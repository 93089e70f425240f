"""Contract suite for ``SqlStore``, run against real SQLite (a file) and real PostgreSQL.

Every test runs on both dialects: the store promises one behaviour whatever the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, inspect, select

from limits.errors import AlreadyExists, ConfigError, InvalidValue, NotFound, StoreUnavailable
from limits.periods import Period, PeriodKind, bounds
from limits.ports import LedgerEntry
from limits.scopes import LimitConfig
from limits.store.schema import ledger, metadata
from limits.store.sql import SqlStore
from limits.store.sql_engine import async_url, create_engine
from limits.usage import Usage

AT = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    sql_store = await SqlStore.connect(database_url)
    await sql_store.migrate()
    try:
        yield sql_store
    finally:
        await sql_store.close()


def entry(
    request_id: str, user_id: int, cost: int, at: datetime = AT, model: str = "m"
) -> LedgerEntry:
    return LedgerEntry(
        request_id=request_id,
        user_id=user_id,
        model=model,
        upstream="openai",
        endpoint="/v1/chat/completions",
        usage=Usage(input_tokens=10, output_tokens=5, cache_read_tokens=2, reasoning_tokens=1),
        cost_micros=cost,
        estimated=False,
        started_at=at - timedelta(seconds=1),
        charged_at=at,
    )


# -- schema and migrations -----------------------------------------------------------------


async def test_migrate_is_idempotent_and_builds_the_declared_schema(
    store: SqlStore, database_url: str
) -> None:
    assert await store.migrate() == []
    assert await store.schema_version() == 1
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(
                lambda sync: {
                    table: {column["name"] for column in inspect(sync).get_columns(table)}
                    for table in inspect(sync).get_table_names()
                }
            )
    finally:
        await engine.dispose()
    declared = {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}
    assert found == declared


async def test_concurrent_migrations_apply_each_step_once(database_url: str) -> None:
    stores = [await SqlStore.connect(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(v for applied in results for v in applied) == [1]
        assert await stores[0].schema_version() == 1
    finally:
        for s in stores:
            await s.close()


async def test_migrate_reports_progress(database_url: str) -> None:
    lines: list[str] = []
    sql_store = await SqlStore.connect(database_url)
    try:
        assert await sql_store.schema_version() == 0
        assert await sql_store.migrate(lines.append) == [1]
    finally:
        await sql_store.close()
    assert lines == ["applying migration 1: initial schema", "schema is at version 1"]


# -- users, groups, memberships --------------------------------------------------------------


async def test_users_round_trip_with_groups_and_utc_times(store: SqlStore) -> None:
    await store.create_group("staff", AT)
    await store.create_group("admins", AT)
    local = AT.astimezone(timezone(timedelta(hours=5)))
    alice = await store.create_user("alice", ["staff", "admins", "staff"], local)
    assert alice.groups == ("admins", "staff")
    assert alice.created_at == AT
    assert alice.created_at.utcoffset() == timedelta(0)
    assert await store.get_user("alice") == alice
    await store.create_user("bob", [], AT)
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]
    with pytest.raises(AlreadyExists):
        await store.create_user("alice", [], AT)


async def test_unknown_group_creates_nothing(store: SqlStore) -> None:
    with pytest.raises(NotFound, match="group 'ghost'"):
        await store.create_user("carol", ["ghost"], AT)
    with pytest.raises(NotFound):
        await store.get_user("carol")


async def test_delete_user_revokes_keys_keeps_ledger_and_frees_the_name(store: SqlStore) -> None:
    await store.create_group("staff", AT)
    alice = await store.create_user("alice", ["staff"], AT)
    await store.create_key("alice", "a" * 64, "sk-sp-aaaaaa", None, AT)
    await store.set_user_limit("alice", 5)
    assert await store.insert([entry("r1", alice.id, 700)]) == 1
    await store.delete_user("alice", AT)
    assert await store.principal_for_key("a" * 64) is None
    assert (await store.get_group("staff")).member_count == 0
    assert await store.user_overrides() == []
    assert await store.user_total(alice.id, bounds(PeriodKind.MONTH, AT)) == 700
    assert alice.id not in await store.user_ids()
    again = await store.create_user("alice", [], AT)
    assert again.id != alice.id
    assert await store.user_ids() == [again.id]
    with pytest.raises(NotFound):
        await store.delete_user("nobody", AT)


async def test_groups_and_memberships(store: SqlStore) -> None:
    await store.create_user("alice", [], AT)
    group = await store.create_group("staff", AT)
    assert (group.name, group.member_count, group.limit_micros) == ("staff", 0, None)
    with pytest.raises(AlreadyExists):
        await store.create_group("staff", AT)
    await store.add_member("staff", "alice")
    await store.add_member("staff", "alice")  # idempotent
    await store.set_group_limit("staff", 9)
    assert (await store.get_group("staff")).member_count == 1
    assert [g.limit_micros for g in await store.list_groups()] == [9]
    await store.remove_member("staff", "alice")
    with pytest.raises(NotFound, match="membership"):
        await store.remove_member("staff", "alice")
    with pytest.raises(NotFound):
        await store.add_member("staff", "nobody")
    await store.add_member("staff", "alice")
    await store.delete_group("staff")
    assert (await store.get_user("alice")).groups == ()
    with pytest.raises(NotFound):
        await store.get_group("staff")


async def test_concurrent_creates_of_one_name_yield_one_user(database_url: str) -> None:
    stores = [await SqlStore.connect(database_url) for _ in range(4)]
    try:
        await stores[0].migrate()
        results = await asyncio.gather(
            *(s.create_user("dup", [], AT) for s in stores), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException))
        assert [u.name for u in await stores[0].list_users()] == ["dup"]
    finally:
        for s in stores:
            await s.close()


# -- keys ------------------------------------------------------------------------------------


async def test_keys_lookup_list_and_revoke(store: SqlStore) -> None:
    alice = await store.create_user("alice", [], AT)
    key = await store.create_key("alice", "b" * 64, "sk-sp-bbbbbb", "laptop", AT)
    principal = await store.principal_for_key("b" * 64)
    assert principal is not None
    assert (principal.user_id, principal.user_name, principal.key_id) == (alice.id, "alice", key.id)
    assert await store.principal_for_key("c" * 64) is None
    assert await store.list_keys("alice") == [key]
    later = AT + timedelta(hours=1)
    await store.revoke_key(key.id, later)
    await store.revoke_key(key.id, later + timedelta(hours=1))  # idempotent, keeps first time
    assert await store.principal_for_key("b" * 64) is None
    assert (await store.list_keys("alice"))[0].revoked_at == later
    with pytest.raises(NotFound):
        await store.revoke_key(key.id + 100, AT)
    with pytest.raises(NotFound):
        await store.create_key("nobody", "d" * 64, "sk-sp-dddddd", None, AT)


# -- limits and revision ---------------------------------------------------------------------


async def test_limit_config_and_overrides(store: SqlStore) -> None:
    assert await store.limit_config() == LimitConfig()
    config = LimitConfig(enabled=True, period=PeriodKind.WEEK, default_limit_micros=3_000_000)
    await store.set_limit_config(config)
    assert await store.limit_config() == config
    alice = await store.create_user("alice", [], AT)
    for name in ("a-team", "b-team", "c-team"):
        await store.create_group(name, AT)
        await store.add_member(name, "alice")
    await store.set_group_limit("a-team", 7)
    await store.set_group_limit("b-team", 4)
    await store.set_user_limit("alice", 10)
    await store.set_user_limit("alice", 0)  # upsert; 0 is a real limit
    limits = await store.user_limits(alice.id)
    assert limits.user_limit_micros == 0
    assert dict(limits.group_limits_micros) == {"a-team": 7, "b-team": 4}
    assert await store.user_overrides() == [("alice", 0)]
    await store.set_user_limit("alice", None)
    with pytest.raises(NotFound):
        await store.set_user_limit("alice", None)
    await store.set_group_limit("a-team", None)
    with pytest.raises(NotFound):
        await store.set_group_limit("a-team", None)
    with pytest.raises(NotFound):
        await store.set_group_limit("nope", 1)
    assert (await store.user_limits(alice.id)).user_limit_micros is None


async def test_every_admin_write_bumps_the_revision(store: SqlStore) -> None:
    writes = [
        store.create_group("staff", AT),
        store.create_user("alice", ["staff"], AT),
        store.add_member("staff", "alice"),
        store.create_key("alice", "e" * 64, "sk-sp-eeeeee", None, AT),
        store.revoke_key(1, AT),
        store.set_limit_config(LimitConfig(enabled=True)),
        store.set_user_limit("alice", 1),
        store.set_group_limit("staff", 1),
        store.remove_member("staff", "alice"),
        store.delete_group("staff"),
        store.delete_user("alice", AT),
    ]
    for write in writes:
        before = await store.revision()
        await write
        assert await store.revision() == before + 1
    before = await store.revision()
    await store.insert([entry("r1", 1, 5)])
    with pytest.raises(NotFound):
        await store.delete_user("alice", AT)  # a failed write changes nothing
    assert await store.revision() == before


# -- ledger ----------------------------------------------------------------------------------


async def test_ledger_insert_is_idempotent_on_request_id(store: SqlStore) -> None:
    batch = [entry(f"r{i}", 1, 100 + i) for i in range(3)]
    assert await store.insert(batch) == 3
    assert await store.insert(batch) == 0
    assert await store.insert([*batch, entry("r3", 1, 5), entry("r3", 1, 5)]) == 1
    assert await store.insert([]) == 0
    assert await store.user_total(1, bounds(PeriodKind.DAY, AT)) == 100 + 101 + 102 + 5


async def test_ledger_inserts_use_one_statement_text_whatever_the_batch_size(
    database_url: str,
) -> None:
    """Drivers keep one prepared statement per text: a text per batch size grew memory without
    bound (sql_ledger rule 5)."""
    engine = create_engine(database_url)
    store = SqlStore(engine)
    await store.migrate()
    texts: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "INSERT INTO ledger" in statement:
            texts.add(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        inserted = 0
        for size in (1, 2, 3, 7, 50, 1, 120, 13):
            batch = [entry(f"r{inserted + i}", 1, 1) for i in range(size)]
            assert await store.insert(batch) == size
            inserted += size
        assert await store.insert([entry("r0", 1, 1), entry("new", 1, 1)]) == 1
    finally:
        await store.close()
    assert len(texts) == 1


async def test_ledger_rows_round_trip_exactly(store: SqlStore, database_url: str) -> None:
    at = datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5)))
    odd = LedgerEntry(
        request_id='req-"quoted"\\back\u00e9-\u2603',
        user_id=2**40,
        model="m'odel \n ünïcode",
        upstream="up",
        endpoint="/v1/chat/completions",
        usage=Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4),
        cost_micros=2**53 + 1,  # past a double's exact range
        estimated=True,
        started_at=at - timedelta(microseconds=1),
        charged_at=at.replace(microsecond=0),  # a whole second: still fixed-width text
    )
    assert await store.insert([odd]) == 1
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(ledger))).one()
            if engine.dialect.name == "sqlite":  # the text SQLAlchemy itself would store
                await conn.execute(
                    insert(ledger).values({**dict(row._mapping), "id": 99, "request_id": "core"})
                )
                raw = await conn.exec_driver_sql(
                    "SELECT started_at, charged_at FROM ledger ORDER BY request_id"
                )
                core, ours = (tuple(found) for found in raw.all())
                assert ours == core
                assert ours[1] == "2026-12-01 04:59:59.000000"
    finally:
        await engine.dispose()
    assert row.request_id == odd.request_id
    assert (row.user_id, row.model, row.cost_micros, row.estimated) == (
        2**40,
        odd.model,
        2**53 + 1,
        True,
    )
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == (1, 2, 3)
    assert (row.cache_write_tokens, row.reasoning_tokens) == (4, 0)
    assert row.started_at == odd.started_at
    assert row.charged_at == odd.charged_at
    assert row.charged_at.tzinfo is not None


async def test_naive_ledger_times_are_refused(store: SqlStore) -> None:
    naive = datetime(2026, 11, 18, 12)  # noqa: DTZ001 - the point of the test
    bad = LedgerEntry("naive", 1, "m", "u", "/e", Usage(), 1, False, naive, naive)
    with pytest.raises(ValueError, match="naive"):
        await store.insert([bad])


async def test_totals_answer_every_period_with_half_open_bounds(store: SqlStore) -> None:
    day, week, month = (bounds(kind, AT) for kind in PeriodKind)
    await store.insert(
        [
            entry("today", 1, 1, AT),
            entry("monday", 1, 10, week.start_at),  # start is inside
            entry("month-start", 1, 100, month.start_at),
            entry("next-month", 1, 1000, month.end_at),  # end is outside
            entry("bob-today", 2, 7, AT),
            entry("carol-last-month", 3, 9, month.start_at - timedelta(microseconds=1)),
        ]
    )
    totals = await store.totals([day, week, month])
    assert totals == {
        1: {day: 1, week: 11, month: 111},
        2: {day: 7, week: 7, month: 7},
    }
    assert await store.totals([]) == {}
    assert (
        await store.user_total(
            1, Period(PeriodKind.DAY, month.end_at, month.end_at + timedelta(days=1))
        )
        == 1000
    )


async def test_spend_by_user_model_and_group(store: SqlStore) -> None:
    await store.create_group("staff", AT)
    await store.create_group("ops", AT)
    alice = await store.create_user("alice", ["staff", "ops"], AT)
    bob = await store.create_user("bob", ["staff"], AT)
    await store.insert(
        [
            entry("a1", alice.id, 300, model="gpt-4o"),
            entry("a2", alice.id, 200, model="claude"),
            entry("b1", bob.id, 50, model="gpt-4o"),
            entry("old", bob.id, 999, AT - timedelta(days=40)),
        ]
    )
    month = bounds(PeriodKind.MONTH, AT)
    assert await store.spend(month, "user") == [("alice", 500, 2), ("bob", 50, 1)]
    assert await store.spend(month, "model") == [("gpt-4o", 350, 2), ("claude", 200, 1)]
    assert await store.spend(month, "group") == [("staff", 550, 3), ("ops", 500, 2)]
    with pytest.raises(InvalidValue):
        await store.spend(month, "colour")


# -- connecting and errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver", "database", "query"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite", "x.db", {}),
        ("sqlite:///:memory:", "sqlite+aiosqlite", ":memory:", {}),
        ("postgres://u@h/db", "postgresql+asyncpg", "db", {}),
        (
            "postgresql+psycopg2://u@h/db?sslmode=require",
            "postgresql+asyncpg",
            "db",
            {"ssl": "require"},
        ),
    ],
)
def test_urls_get_the_asyncio_driver(
    url: str, driver: str, database: str, query: dict[str, str]
) -> None:
    translated = async_url(url)
    assert (translated.drivername, translated.database, dict(translated.query)) == (
        driver,
        database,
        query,
    )


def test_unsupported_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        async_url("mysql://h/db")
    with pytest.raises(ConfigError):
        async_url("not a url")


async def test_in_memory_sqlite_works() -> None:
    sql_store = await SqlStore.connect("sqlite:///:memory:")
    try:
        await sql_store.migrate()
        await sql_store.create_user("alice", [], AT)
        assert [u.name for u in await sql_store.list_users()] == ["alice"]
    finally:
        await sql_store.close()


async def test_unreachable_database_is_store_unavailable(tmp_path: Path) -> None:
    for url in ("postgresql://postgres@127.0.0.1:1/none", f"sqlite:///{tmp_path}/no/such/dir.db"):
        sql_store = await SqlStore.connect(url)
        try:
            with pytest.raises(StoreUnavailable):
                await sql_store.ping()
        finally:
            await sql_store.close()
