"""``AdminService``: validation, limit resolution with sources, partial updates, JSON shapes.

Runs over the real ``SqlStore`` on in-memory SQLite (the store's own contract suite covers both
dialects); time comes from the fake clock, spend from a recording fake ``spent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from limits.admin import AdminService
from limits.admin_results import group_to_dict, key_to_dict, user_to_dict
from limits.errors import AlreadyExists, InvalidValue, NotFound
from limits.keys import hash_key, looks_like_key
from limits.periods import Period, PeriodKind, bounds
from limits.ports import LedgerEntry
from limits.scopes import LimitConfig
from limits.store.sql import SqlStore
from limits.usage import Usage
from tests.conftest import FakeClock


@dataclass
class FakeSpent:
    """A ``spent(user_id, period)`` that answers a fixed amount and records its calls."""

    amount_micros: int = 0
    calls: list[tuple[int, Period]] = field(default_factory=list)

    async def __call__(self, user_id: int, period: Period) -> int:
        self.calls.append((user_id, period))
        return self.amount_micros


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    sql_store = await SqlStore.connect("sqlite:///:memory:")
    await sql_store.migrate()
    try:
        yield sql_store
    finally:
        await sql_store.close()


@pytest.fixture
def spent() -> FakeSpent:
    return FakeSpent()


@pytest.fixture
def admin(store: SqlStore, clock: FakeClock, spent: FakeSpent) -> AdminService:
    return AdminService(store, clock=clock, spent=spent)


async def enable(admin: AdminService, default: int | None = None) -> None:
    await admin.update_limit_config({"enabled": True, "default_limit_micros": default})


# -- resolution and status -------------------------------------------------------------------


async def test_disabled_config_is_unlimited_even_with_overrides(admin: AdminService) -> None:
    await admin.create_user("alice")
    await admin.set_user_limit("alice", 5)
    status = (await admin.usage("alice")).to_dict()
    assert status["enabled"] is False
    assert (status["limit_micros"], status["source"], status["remaining_micros"]) == (
        None,
        None,
        None,
    )


async def test_user_override_wins_even_above_a_group(admin: AdminService, spent: FakeSpent) -> None:
    await enable(admin, default=1_000_000)
    await admin.create_group("staff")
    await admin.create_user("alice", ["staff"])
    await admin.set_group_limit("staff", 2_000_000)
    await admin.set_user_limit("alice", 9_000_000)
    spent.amount_micros = 4_000_000
    status = (await admin.usage("alice")).to_dict()
    assert status["source"] == "user"
    assert (status["limit_micros"], status["spent_micros"], status["remaining_micros"]) == (
        9_000_000,
        4_000_000,
        5_000_000,
    )


async def test_lowest_group_override_then_default_then_unlimited(admin: AdminService) -> None:
    await enable(admin, default=1_000_000)
    for group in ("big", "small", "none"):
        await admin.create_group(group)
    await admin.create_user("alice", ["big", "small", "none"])
    await admin.set_group_limit("big", 8_000_000)
    await admin.set_group_limit("small", 3_000_000)
    status = (await admin.usage("alice")).to_dict()
    assert (status["source"], status["source_group"], status["limit_micros"]) == (
        "group",
        "small",
        3_000_000,
    )
    await admin.clear_group_limit("small")
    await admin.clear_group_limit("big")
    status = (await admin.usage("alice")).to_dict()
    assert (status["source"], status["limit_micros"]) == ("default", 1_000_000)
    await admin.update_limit_config({"default_limit_micros": None})
    status = (await admin.usage("alice")).to_dict()
    assert (status["source"], status["limit_micros"]) == (None, None)


async def test_status_uses_the_configured_period_at_the_clock(
    admin: AdminService, clock: FakeClock, spent: FakeSpent
) -> None:
    await admin.update_limit_config({"enabled": True, "period": "week"})
    alice = await admin.create_user("alice")
    spent.amount_micros = 7
    status = await admin.usage("alice")
    assert spent.calls == [(alice.id, bounds(PeriodKind.WEEK, clock.now()))]
    assert status.to_dict() == {
        "user": "alice",
        "enabled": True,
        "limit_micros": None,
        "source": None,
        "source_group": None,
        "period": "week",
        "period_start": "2026-11-16T00:00:00Z",
        "period_end": "2026-11-23T00:00:00Z",
        "spent_micros": 7,
        "remaining_micros": None,
    }


async def test_remaining_never_goes_below_zero(admin: AdminService, spent: FakeSpent) -> None:
    await enable(admin, default=0)
    await admin.create_user("alice")
    spent.amount_micros = 50
    assert (await admin.usage("alice")).to_dict()["remaining_micros"] == 0


# -- limit config ----------------------------------------------------------------------------


async def test_limit_config_update_changes_only_given_fields(admin: AdminService) -> None:
    await admin.update_limit_config({"default_limit_micros": 5})
    config = await admin.update_limit_config({"period": "day"})
    assert config == LimitConfig(enabled=False, period=PeriodKind.DAY, default_limit_micros=5)
    config = await admin.update_limit_config({"enabled": True})
    assert config == LimitConfig(enabled=True, period=PeriodKind.DAY, default_limit_micros=5)
    assert (await admin.limits()).config == config


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"period": "year"}, "period"),
        ({"default_limit_micros": -1}, "default_limit_micros"),
        ({"default_limit_micros": 1.5}, "default_limit_micros"),
        ({"default_limit_micros": True}, "default_limit_micros"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_limit_config_validation_names_the_field(
    admin: AdminService, changes: dict[str, object], field_name: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await admin.update_limit_config(changes)
    assert caught.value.field == field_name
    assert (await admin.limits()).config == LimitConfig()  # nothing was written


async def test_limits_overview_shape(admin: AdminService) -> None:
    await admin.create_group("staff")
    await admin.create_group("plain")
    await admin.create_user("alice", ["staff"])
    await admin.set_user_limit("alice", 12_500_000)
    assert (await admin.set_group_limit("staff", 5_000_000)).to_dict() == {
        "group": "staff",
        "limit_micros": 5_000_000,
        "member_count": 1,
    }
    assert (await admin.limits()).to_dict() == {
        "enabled": False,
        "period": "month",
        "default_limit_micros": None,
        "users": [{"user": "alice", "limit_micros": 12_500_000}],
        "groups": [{"group": "staff", "limit_micros": 5_000_000, "member_count": 1}],
    }


async def test_clearing_a_missing_override_is_not_found(admin: AdminService) -> None:
    await admin.create_user("alice")
    await admin.create_group("staff")
    with pytest.raises(NotFound):
        await admin.clear_user_limit("alice")
    with pytest.raises(NotFound):
        await admin.clear_group_limit("staff")
    with pytest.raises(NotFound):
        await admin.set_user_limit("nobody", 1)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "naïve", "semi;colon", "slash/"])
async def test_bad_names_are_refused(admin: AdminService, name: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        await admin.create_user(name)
    assert caught.value.field == "name"
    with pytest.raises(InvalidValue):
        await admin.create_group(name)


async def test_good_names_and_group_name_validation(admin: AdminService) -> None:
    await admin.create_user("a.b_c-d@example.com")
    await admin.create_user("x" * 64)
    with pytest.raises(InvalidValue) as caught:
        await admin.create_user("bob", ["bad group"])
    assert caught.value.field == "groups"


@pytest.mark.parametrize("limit", [-1, True, 1.0, "5"])
async def test_bad_limits_are_refused(admin: AdminService, limit: object) -> None:
    await admin.create_user("alice")
    with pytest.raises(InvalidValue) as caught:
        await admin.set_user_limit("alice", limit)  # type: ignore[arg-type]
    assert caught.value.field == "limit_micros"


async def test_spend_and_key_arguments_are_validated(admin: AdminService) -> None:
    with pytest.raises(InvalidValue, match="period"):
        await admin.spend(period="last")
    with pytest.raises(InvalidValue, match="group_by"):
        await admin.spend(group_by="colour")
    with pytest.raises(InvalidValue, match="id"):
        await admin.revoke_key(0)
    await admin.create_user("alice")
    with pytest.raises(InvalidValue, match="label"):
        await admin.create_key("alice", "x" * 201)


# -- users, groups, keys ---------------------------------------------------------------------


async def test_user_with_unknown_group_is_not_created(admin: AdminService) -> None:
    with pytest.raises(NotFound, match="group 'ghost'"):
        await admin.create_user("alice", ["ghost"])
    assert await admin.list_users() == []


async def test_user_and_group_json_shapes(admin: AdminService, clock: FakeClock) -> None:
    await admin.create_group("staff")
    user = await admin.create_user("alice", ["staff"])
    assert user_to_dict(user) == {
        "id": user.id,
        "name": "alice",
        "groups": ["staff"],
        "created_at": "2026-11-18T12:00:00Z",
    }
    with pytest.raises(AlreadyExists):
        await admin.create_user("alice")
    group = await admin.add_member("staff", "alice")
    assert group_to_dict(group) == {
        "id": group.id,
        "name": "staff",
        "member_count": 1,
        "limit_micros": None,
        "created_at": "2026-11-18T12:00:00Z",
    }
    await admin.remove_member("staff", "alice")
    await admin.delete_group("staff")
    await admin.delete_user("alice")
    assert await admin.list_groups() == []


async def test_created_key_is_shown_once_and_stored_as_a_hash(
    admin: AdminService, store: SqlStore, clock: FakeClock
) -> None:
    await admin.create_user("alice")
    created = await admin.create_key("alice", "laptop")
    body = created.to_dict()
    assert set(body) == {"id", "key", "prefix", "label", "created_at"}
    assert looks_like_key(body["key"])
    assert body["key"].startswith(body["prefix"])
    principal = await store.principal_for_key(hash_key(created.key))
    assert principal is not None
    assert principal.key_id == created.record.id
    clock.advance(60)
    await admin.revoke_key(created.record.id)
    (listed,) = await admin.list_keys("alice")
    assert key_to_dict(listed) == {
        "id": created.record.id,
        "user": "alice",
        "prefix": body["prefix"],
        "label": "laptop",
        "created_at": "2026-11-18T12:00:00Z",
        "revoked_at": "2026-11-18T12:01:00Z",
    }
    assert await store.principal_for_key(hash_key(created.key)) is None


# -- spend report ----------------------------------------------------------------------------


def charge(request_id: str, user_id: int, cost: int, at: datetime) -> LedgerEntry:
    return LedgerEntry(
        request_id=request_id,
        user_id=user_id,
        model="gpt-4o",
        upstream="openai",
        endpoint="/v1/chat/completions",
        usage=Usage(1, 1),
        cost_micros=cost,
        estimated=False,
        started_at=at,
        charged_at=at,
    )


async def test_spend_report_current_and_previous(admin: AdminService, store: SqlStore) -> None:
    alice = await admin.create_user("alice")
    now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    await store.insert(
        [charge("now", alice.id, 300, now), charge("oct", alice.id, 40, now - timedelta(days=30))]
    )
    current = (await admin.spend()).to_dict()
    assert current == {
        "which": "current",
        "period": "month",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "group_by": "user",
        "rows": [{"user": "alice", "cost_micros": 300, "calls": 1}],
    }
    previous = (await admin.spend("previous", "model")).to_dict()
    assert previous["period_start"] == "2026-10-01T00:00:00Z"
    assert previous["rows"] == [{"model": "gpt-4o", "cost_micros": 40, "calls": 1}]
