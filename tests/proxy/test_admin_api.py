"""The admin API's users, groups, memberships and keys, and how it rejects bad input (SPEC §5).

The real app (``create_app``) on a tmp SQLite file; user ``alice`` with key id 1 is seeded by
``tests/proxy/conftest.py``. Every answer is checked against the OpenAPI document
(``tests/proxy/admin_client.py``). Limits, usage and spend: ``test_admin_limits.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from limits.admin import MAX_STORED_INT
from limits.errors import AlreadyExists, InvalidValue, NotFound, StoreUnavailable
from proxy.admin import openapi_document
from proxy.admin_http import translate
from proxy.app import create_app
from proxy.keys import PRICES, SETTINGS
from tests.proxy.admin_client import TOKEN, AdminClient
from tests.proxy.conftest import Proxy, StartProxy


@pytest.fixture
async def admin_proxy(start_proxy: StartProxy) -> Proxy:
    return await start_proxy(admin_token=TOKEN)


@pytest.fixture
def admin(admin_proxy: Proxy) -> AdminClient:
    return AdminClient(admin_proxy.client, openapi_document())


async def test_users_are_created_listed_read_and_deleted(admin: AdminClient) -> None:
    await admin.call("POST", "/groups", 201, json={"name": "eng"})
    bob = await admin.call("POST", "/users", 201, json={"name": "bob", "groups": ["eng"]})
    assert bob["name"] == "bob"
    assert bob["groups"] == ["eng"]
    assert bob["created_at"].endswith("Z")
    assert await admin.call("GET", "/users/bob", 200) == bob
    names = [user["name"] for user in await admin.call("GET", "/users", 200)]
    assert names == ["alice", "bob"]
    assert await admin.call("DELETE", "/users/bob", 204) is None
    await admin.call("GET", "/users/bob", 404)
    await admin.call("DELETE", "/users/bob", 404)


async def test_a_duplicate_name_is_409(admin: AdminClient) -> None:
    error = await admin.error("POST", "/users", 409, json={"name": "alice"})
    assert error == {
        "message": "user 'alice' already exists",
        "type": "invalid_request_error",
        "param": None,
        "code": "already_exists",
    }
    await admin.call("POST", "/groups", 201, json={"name": "eng"})
    assert (await admin.error("POST", "/groups", 409, json={"name": "eng"}))["code"] == (
        "already_exists"
    )


async def test_a_user_in_an_unknown_group_is_404_and_not_created(admin: AdminClient) -> None:
    error = await admin.error("POST", "/users", 404, json={"name": "bob", "groups": ["ghost"]})
    assert error["code"] == "not_found"
    assert "ghost" in error["message"]
    await admin.call("GET", "/users/bob", 404)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "no spaces"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": 7}, "name"),
        ({"name": "bob", "groups": "eng"}, "groups"),
        ({"name": "bob", "groups": ["bad name"]}, "groups"),
        ({"name": "bob", "groups": [1]}, "groups.0"),
        ({"name": "bob", "admin": True}, "admin"),
        ({"groups": []}, "name"),
    ],
)
async def test_bad_user_fields_are_400_naming_the_field(
    admin: AdminClient, body: dict[str, Any], param: str
) -> None:
    error = await admin.error("POST", "/users", 400, json=body)
    assert error["param"] == param
    assert error["code"] == "invalid_value"
    assert error["message"].startswith(f"{param}: ")


@pytest.mark.parametrize("raw", [b"", b"{", b"name=bob", b"[]", b'"bob"', b"null"])
async def test_a_body_that_is_not_a_json_object_is_400_invalid_json(
    admin: AdminClient, raw: bytes
) -> None:
    error = await admin.error("POST", "/users", 400, data=raw)
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"


async def test_groups_and_membership(admin: AdminClient) -> None:
    group = await admin.call("POST", "/groups", 201, json={"name": "eng"})
    assert group["member_count"] == 0
    assert group["limit_micros"] is None
    joined = await admin.call("PUT", "/groups/eng/members/alice", 200)
    assert joined["member_count"] == 1
    assert (await admin.call("PUT", "/groups/eng/members/alice", 200)) == joined  # idempotent
    assert (await admin.call("GET", "/users/alice", 200))["groups"] == ["eng"]
    assert await admin.call("GET", "/groups/eng", 200) == joined
    assert [g["name"] for g in await admin.call("GET", "/groups", 200)] == ["eng"]
    await admin.call("DELETE", "/groups/eng/members/alice", 204)
    await admin.call("DELETE", "/groups/eng/members/alice", 404)  # not a member any more
    await admin.call("PUT", "/groups/eng/members/ghost", 404)
    await admin.call("PUT", "/groups/ghost/members/alice", 404)
    await admin.call("DELETE", "/groups/eng", 204)
    await admin.call("GET", "/groups/eng", 404)
    await admin.call("DELETE", "/groups/eng", 404)
    assert (await admin.error("POST", "/groups", 400, json={"name": "a/b"}))["param"] == "name"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/no%20such"),
        ("GET", "/groups/%E2%82%AC"),
        ("PUT", "/groups/eng/members/" + "x" * 65),
        ("DELETE", "/limits/users/a%00b"),
    ],
)
async def test_a_path_name_that_cannot_exist_is_404(
    admin: AdminClient, method: str, path: str
) -> None:
    assert (await admin.error(method, path, 404))["code"] == "not_found"


async def test_keys_are_shown_once_listed_without_secrets_and_revoked(
    admin_proxy: Proxy, admin: AdminClient
) -> None:
    created = await admin.call("POST", "/users/alice/keys", 201, json={"label": "laptop"})
    assert created["key"].startswith("sk-sp-")
    assert created["key"].startswith(created["prefix"])
    assert created["label"] == "laptop"
    unlabelled = await admin.call("POST", "/users/alice/keys", 201)  # no body at all
    assert unlabelled["label"] is None
    listed = await admin.call("GET", "/users/alice/keys", 200)
    assert [k["id"] for k in listed] == [1, created["id"], unlabelled["id"]]
    assert all("key" not in k for k in listed)
    assert created["key"] not in str(listed)
    async with admin_proxy.client.get("/v1/usage", headers=admin_proxy.auth(created["key"])) as r:
        assert r.status == 200
    await admin.call("DELETE", f"/keys/{created['id']}", 204)
    await admin.call("DELETE", f"/keys/{created['id']}", 204)  # idempotent
    revoked = await admin.call("GET", "/users/alice/keys", 200)
    assert [k["revoked_at"] is not None for k in revoked] == [False, True, False]


async def test_key_errors(admin: AdminClient) -> None:
    await admin.call("POST", "/users/ghost/keys", 404, json={})
    await admin.call("GET", "/users/ghost/keys", 404)
    await admin.call("DELETE", "/keys/999", 404)
    for label in ("x" * 201, "a\x00b", 7):
        error = await admin.error("POST", "/users/alice/keys", 400, json={"label": label})
        assert error["param"] == "label"
    await admin.call("POST", "/users/alice/keys", 201, json={"label": "x" * 200})
    assert (await admin.error("POST", "/users/alice/keys", 400, json={"labl": "x"}))["param"] == (
        "labl"
    )
    for bad in ("abc", "0", "-1", "1.5", "\u0661", str(MAX_STORED_INT + 1), "9" * 5000):
        assert (await admin.error("DELETE", f"/keys/{bad}", 400))["param"] == "id"


async def test_the_admin_api_answers_503_without_the_sql_store(
    admin_proxy: Proxy, aiohttp_client: AiohttpClient
) -> None:
    """A proxy built on injected ports only has no ``AccountsStore`` for the admin API."""
    app = create_app(
        admin_proxy.app[SETTINGS],
        clock=admin_proxy.clock,
        directory=admin_proxy.store,
        ledger=admin_proxy.store,
        prices=admin_proxy.app[PRICES],
    )
    client = await aiohttp_client(app)
    try:
        error = await AdminClient(client, openapi_document()).error("GET", "/users", 503)
        assert error["type"] == "service_unavailable"
    finally:
        await client.close()  # before the shared store closes: shutdown still writes to it


def test_domain_errors_translate_to_http_errors() -> None:
    assert translate(NotFound("user", "x")).status == 404
    assert translate(AlreadyExists("user", "x")).status == 409
    invalid = translate(InvalidValue("period", "must be one of day, week, month"))
    assert (invalid.status, invalid.param) == (400, "period")
    assert translate(StoreUnavailable("down")).status == 503


async def test_a_body_over_max_body_bytes_is_413(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(admin_token=TOKEN, max_body_bytes=64)
    admin = AdminClient(proxy.client, openapi_document())
    await admin.call("POST", "/users", 413, json={"name": "bob", "groups": ["x" * 64]})
