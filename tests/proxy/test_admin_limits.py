"""The admin API's limits, usage and spend routes, and how fast running proxies obey them.

Two proxies on one SQLite file stand for two replicas: the admin writes through one, the client
calls the other, whose ``CachedDirectory`` must notice the new database revision by itself
(SPEC §4: "Revocation takes effect on every replica within 2 s").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from limits.admin import MAX_STORED_INT
from proxy.admin import openapi_document
from tests.proxy.admin_client import TOKEN, AdminClient
from tests.proxy.conftest import Proxy, StartProxy

CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "Say hello"}]}
CALL_MICROS = 190  # what the fake upstream's usage costs on test-model (test_handlers.py)
DEADLINE_S = 2.0


@pytest.fixture
async def admin_proxy(start_proxy: StartProxy) -> Proxy:
    return await start_proxy(admin_token=TOKEN)


@pytest.fixture
def admin(admin_proxy: Proxy) -> AdminClient:
    return AdminClient(admin_proxy.client, openapi_document())


async def chat(proxy: Proxy, key: str | None = None) -> int:
    async with proxy.client.post("/v1/chat/completions", json=CHAT, headers=proxy.auth(key)) as r:
        await r.read()
        return r.status


async def seconds_until(proxy: Proxy, status: int, key: str | None = None) -> float:
    """How long until a chat call through ``proxy`` answers ``status`` (fails after 2 s)."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < DEADLINE_S:
        if await chat(proxy, key) == status:
            return elapsed
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {status} within {DEADLINE_S} s")


async def test_limit_config_changes_only_the_fields_given(admin: AdminClient) -> None:
    initial = await admin.call("GET", "/limits", 200)
    assert initial == {
        "enabled": False,
        "period": "month",
        "default_limit_micros": None,
        "users": [],
        "groups": [],
    }
    on = await admin.call("PUT", "/limits", 200, json={"enabled": True})
    assert on == {"enabled": True, "period": "month", "default_limit_micros": None}
    weekly = {"period": "week", "default_limit_micros": 5_000_000}
    assert await admin.call("PUT", "/limits", 200, json=weekly) == {"enabled": True, **weekly}
    assert (await admin.call("PUT", "/limits", 200, json={}))["period"] == "week"
    cleared = await admin.call("PUT", "/limits", 200, json={"default_limit_micros": None})
    assert cleared["default_limit_micros"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"period": "year"}, "period"),
        ({"period": 1}, "period"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": None}, "enabled"),
        ({"enabled": 1}, "enabled"),
        ({"default_limit_micros": -1}, "default_limit_micros"),
        ({"default_limit_micros": 1.5}, "default_limit_micros"),
        ({"default_limit_micros": "5"}, "default_limit_micros"),
        ({"default_limit_micros": MAX_STORED_INT + 1}, "default_limit_micros"),
        ({"enabled": True, "mode": "reserve"}, "mode"),
    ],
)
async def test_bad_limit_config_is_400_naming_the_field(
    admin: AdminClient, body: dict[str, Any], param: str
) -> None:
    assert (await admin.error("PUT", "/limits", 400, json=body))["param"] == param
    assert (await admin.call("GET", "/limits", 200))["enabled"] is False  # nothing changed


async def test_user_and_group_limits_are_set_listed_and_cleared(admin: AdminClient) -> None:
    await admin.call("POST", "/groups", 201, json={"name": "eng"})
    await admin.call("PUT", "/groups/eng/members/alice", 200)
    user = await admin.call("PUT", "/limits/users/alice", 200, json={"limit_micros": 7})
    assert user == {"user": "alice", "limit_micros": 7}
    group = await admin.call("PUT", "/limits/groups/eng", 200, json={"limit_micros": 0})
    assert group == {"group": "eng", "limit_micros": 0, "member_count": 1}
    overview = await admin.call("GET", "/limits", 200)
    assert (overview["users"], overview["groups"]) == ([user], [group])
    for path in ("/limits/users/alice", "/limits/groups/eng"):
        await admin.call("DELETE", path, 204)
        await admin.call("DELETE", path, 404)  # nothing left to clear
    overview = await admin.call("GET", "/limits", 200)
    assert (overview["users"], overview["groups"]) == ([], [])


@pytest.mark.parametrize("path", ["/limits/users/ghost", "/limits/groups/ghost"])
async def test_limits_of_unknown_targets_are_404(admin: AdminClient, path: str) -> None:
    await admin.call("PUT", path, 404, json={"limit_micros": 1})
    await admin.call("DELETE", path, 404)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limit_micros": -1}, "limit_micros"),
        ({"limit_micros": True}, "limit_micros"),
        ({"limit_micros": "5"}, "limit_micros"),
        ({"limit_micros": 1.0}, "limit_micros"),
        ({"limit_micros": None}, "limit_micros"),
        ({"limit_micros": MAX_STORED_INT + 1}, "limit_micros"),
        ({}, "limit_micros"),
        ({"limit_micros": 1, "limit": 1}, "limit"),
    ],
)
@pytest.mark.parametrize("path", ["/limits/users/alice", "/limits/groups/eng"])
async def test_bad_limits_are_400_naming_the_field(
    admin: AdminClient, path: str, body: dict[str, Any], param: str
) -> None:
    await admin.call("POST", "/groups", 201, json={"name": "eng"})
    assert (await admin.error("PUT", path, 400, json=body))["param"] == param


async def test_usage_reads_the_live_counters_and_names_the_source(
    admin_proxy: Proxy, admin: AdminClient
) -> None:
    status = await admin.call("GET", "/users/alice/usage", 200)
    assert status["enabled"] is False
    assert (status["limit_micros"], status["source"], status["remaining_micros"]) == (None,) * 3
    assert status["spent_micros"] == 0
    assert await chat(admin_proxy) == 200
    await admin_proxy.drain()
    await admin.call("POST", "/groups", 201, json={"name": "eng"})
    await admin.call("PUT", "/groups/eng/members/alice", 200)
    await admin.call("PUT", "/limits/groups/eng", 200, json={"limit_micros": 1_000})
    await admin.call("PUT", "/limits", 200, json={"enabled": True})
    status = await admin.call("GET", "/users/alice/usage", 200)
    assert status["spent_micros"] == CALL_MICROS
    assert (status["source"], status["source_group"]) == ("group", "eng")
    assert status["remaining_micros"] == 1_000 - CALL_MICROS
    await admin.call("GET", "/users/ghost/usage", 404)


async def test_spend_reports_the_ledger_by_user_model_and_group(
    admin_proxy: Proxy, admin: AdminClient
) -> None:
    assert await chat(admin_proxy) == 200
    await admin_proxy.drain()
    report = await admin.call("GET", "/spend", 200)
    assert (report["which"], report["period"], report["group_by"]) == ("current", "month", "user")
    assert report["rows"] == [{"user": "alice", "cost_micros": CALL_MICROS, "calls": 1}]
    by_model = await admin.call("GET", "/spend", 200, params={"group_by": "model"})
    assert by_model["rows"] == [{"model": "test-model", "cost_micros": CALL_MICROS, "calls": 1}]
    assert (await admin.call("GET", "/spend", 200, params={"group_by": "group"}))["rows"] == []
    previous = await admin.call("GET", "/spend", 200, params={"period": "previous"})
    assert previous["rows"] == []
    assert previous["period_end"] == report["period_start"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"period": "last"}, "period"),
        ({"group_by": "key"}, "group_by"),
        ({"by": "user"}, "by"),
        ([("period", "current"), ("period", "previous")], "period"),
    ],
)
async def test_bad_spend_queries_are_400_naming_the_parameter(
    admin: AdminClient, params: dict[str, str] | list[tuple[str, str]], param: str
) -> None:
    assert (await admin.error("GET", "/spend", 400, params=params))["param"] == param


async def test_a_revoked_key_is_refused_by_another_replica_within_2_s(
    start_proxy: StartProxy,
) -> None:
    writer, replica = await start_proxy(admin_token=TOKEN), await start_proxy(admin_token=TOKEN)
    admin = AdminClient(writer.client, openapi_document())
    created = await admin.call("POST", "/users/alice/keys", 201)
    key = created["key"]
    assert await chat(replica, key) == 200  # the replica has the key cached now
    await admin.call("DELETE", f"/keys/{created['id']}", 204)
    assert await seconds_until(replica, 401, key) < DEADLINE_S
    assert await chat(replica) == 200  # alice's other key still works


async def test_a_lowered_limit_is_enforced_by_another_replica_within_2_s(
    start_proxy: StartProxy,
) -> None:
    writer, replica = await start_proxy(admin_token=TOKEN), await start_proxy(admin_token=TOKEN)
    admin = AdminClient(writer.client, openapi_document())
    await admin.call("PUT", "/limits", 200, json={"enabled": True})
    await admin.call("PUT", "/limits/users/alice", 200, json={"limit_micros": 1_000_000})
    assert await chat(replica) == 200  # the replica has the generous limit cached now
    await replica.drain()
    await admin.call("PUT", "/limits/users/alice", 200, json={"limit_micros": CALL_MICROS})
    assert await seconds_until(replica, 429) < DEADLINE_S
