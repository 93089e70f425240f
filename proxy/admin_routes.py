"""The admin API's endpoints and its route table, ``operations()`` (SPEC §5).

Each endpoint makes one ``AdminService`` call (the same one the CLI command makes, see
``proxy/cli_commands.py``) and returns the JSON of ``limits.admin_results``; deletes return
``None`` and answer 204 No Content. The table row of an endpoint says everything else: its
path, success status, models and error statuses (``proxy/admin_http.py`` rule 1).

Choices where SPEC §5 is silent: every DELETE answers 204 with no body; ``PUT`` of a membership
answers 200 with the group; ``PUT /limits`` answers 200 with the new config and changes only the
fields given; ``GET /groups/{group}`` exists next to the list; ``POST /users/{user}/keys`` takes
an empty body as ``{}``.
"""

from __future__ import annotations

from typing import Any

from limits.admin import AdminService
from limits.admin_results import config_to_dict, group_to_dict, key_to_dict, user_to_dict
from proxy import admin_models as m
from proxy.admin_http import Args, Operation

__all__ = ["operations"]


async def create_user(admin: AdminService, args: Args) -> Any:
    body = args.body_as(m.NewUserBody)
    return user_to_dict(await admin.create_user(body.name, body.groups))


async def list_users(admin: AdminService, args: Args) -> Any:
    return [user_to_dict(user) for user in await admin.list_users()]


async def get_user(admin: AdminService, args: Args) -> Any:
    return user_to_dict(await admin.get_user(args.name("user")))


async def delete_user(admin: AdminService, args: Args) -> None:
    await admin.delete_user(args.name("user"))


async def create_group(admin: AdminService, args: Args) -> Any:
    return group_to_dict(await admin.create_group(args.body_as(m.NewGroupBody).name))


async def list_groups(admin: AdminService, args: Args) -> Any:
    return [group_to_dict(group) for group in await admin.list_groups()]


async def get_group(admin: AdminService, args: Args) -> Any:
    return group_to_dict(await admin.get_group(args.name("group")))


async def delete_group(admin: AdminService, args: Args) -> None:
    await admin.delete_group(args.name("group"))


async def add_member(admin: AdminService, args: Args) -> Any:
    return group_to_dict(await admin.add_member(args.name("group"), args.name("user")))


async def remove_member(admin: AdminService, args: Args) -> None:
    await admin.remove_member(args.name("group"), args.name("user"))


async def create_key(admin: AdminService, args: Args) -> Any:
    created = await admin.create_key(args.name("user"), args.body_as(m.NewKeyBody).label)
    return created.to_dict()


async def list_keys(admin: AdminService, args: Args) -> Any:
    return [key_to_dict(key) for key in await admin.list_keys(args.name("user"))]


async def revoke_key(admin: AdminService, args: Args) -> None:
    await admin.revoke_key(args.key_id())


async def get_limits(admin: AdminService, args: Args) -> Any:
    return (await admin.limits()).to_dict()


async def update_limits(admin: AdminService, args: Args) -> Any:
    changes = args.body_as(m.LimitConfigBody).model_dump(exclude_unset=True)
    return config_to_dict(await admin.update_limit_config(changes))


async def set_user_limit(admin: AdminService, args: Args) -> Any:
    limit_micros = args.body_as(m.LimitBody).limit_micros
    return (await admin.set_user_limit(args.name("user"), limit_micros)).to_dict()


async def clear_user_limit(admin: AdminService, args: Args) -> None:
    await admin.clear_user_limit(args.name("user"))


async def set_group_limit(admin: AdminService, args: Args) -> Any:
    limit_micros = args.body_as(m.LimitBody).limit_micros
    return (await admin.set_group_limit(args.name("group"), limit_micros)).to_dict()


async def clear_group_limit(admin: AdminService, args: Args) -> None:
    await admin.clear_group_limit(args.name("group"))


async def user_usage(admin: AdminService, args: Args) -> Any:
    return (await admin.usage(args.name("user"))).to_dict()


async def spend(admin: AdminService, args: Args) -> Any:
    query = args.query_as(m.SpendQuery)
    return (await admin.spend(query.period, query.group_by)).to_dict()


def _users() -> list[Operation]:
    return [
        Operation("POST", "/users", create_user, "Create a user, optionally in existing groups",
                  201, m.User, body=m.NewUserBody, errors=(400, 404, 409)),
        Operation("GET", "/users", list_users, "List users", answer=m.User, many=True),
        Operation("GET", "/users/{user}", get_user, "Get a user", answer=m.User, errors=(404,)),
        Operation("DELETE", "/users/{user}", delete_user,
                  "Delete a user: their keys are revoked, their ledger rows kept", 204,
                  errors=(404,)),
        Operation("GET", "/users/{user}/usage", user_usage,
                  "A user's spend status in the current period", answer=m.Status, errors=(404,)),
    ]  # fmt: skip


def _groups() -> list[Operation]:
    return [
        Operation("POST", "/groups", create_group, "Create a group", 201, m.Group,
                  body=m.NewGroupBody, errors=(400, 409)),
        Operation("GET", "/groups", list_groups, "List groups", answer=m.Group, many=True),
        Operation("GET", "/groups/{group}", get_group, "Get a group", answer=m.Group,
                  errors=(404,)),
        Operation("DELETE", "/groups/{group}", delete_group,
                  "Delete a group with its memberships and limit", 204, errors=(404,)),
        Operation("PUT", "/groups/{group}/members/{user}", add_member,
                  "Add a user to a group (idempotent); answers the group", answer=m.Group,
                  errors=(404,)),
        Operation("DELETE", "/groups/{group}/members/{user}", remove_member,
                  "Remove a user from a group (404 if not a member)", 204, errors=(404,)),
    ]  # fmt: skip


def _keys() -> list[Operation]:
    return [
        Operation("POST", "/users/{user}/keys", create_key,
                  "Create an API key: the only answer that shows the key", 201, m.CreatedKey,
                  body=m.NewKeyBody, body_required=False, errors=(400, 404)),
        Operation("GET", "/users/{user}/keys", list_keys, "List a user's keys (no secrets)",
                  answer=m.Key, many=True, errors=(404,)),
        Operation("DELETE", "/keys/{id}", revoke_key,
                  "Revoke a key (idempotent); effective on every replica within 2 s", 204,
                  errors=(400, 404)),
    ]  # fmt: skip


def _limits() -> list[Operation]:
    return [
        Operation("GET", "/limits", get_limits, "The limit config and every override",
                  answer=m.Limits),
        Operation("PUT", "/limits", update_limits,
                  "Change the limit config: only the fields given change",
                  answer=m.LimitConfig, body=m.LimitConfigBody, errors=(400,)),
        Operation("PUT", "/limits/users/{user}", set_user_limit, "Set a user's limit",
                  answer=m.UserLimit, body=m.LimitBody, errors=(400, 404)),
        Operation("DELETE", "/limits/users/{user}", clear_user_limit,
                  "Clear a user's limit (404 if none)", 204, errors=(404,)),
        Operation("PUT", "/limits/groups/{group}", set_group_limit, "Set a group's limit",
                  answer=m.GroupLimit, body=m.LimitBody, errors=(400, 404)),
        Operation("DELETE", "/limits/groups/{group}", clear_group_limit,
                  "Clear a group's limit (404 if none)", 204, errors=(404,)),
        Operation("GET", "/spend", spend, "Ledger totals for the current or previous period",
                  answer=m.SpendReport, query=m.SpendQuery, errors=(400,)),
    ]  # fmt: skip


def operations() -> tuple[Operation, ...]:
    """Every admin operation except ``GET /openapi.json`` (``proxy/admin.py`` adds that)."""
    return (*_users(), *_groups(), *_keys(), *_limits())
