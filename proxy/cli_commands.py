"""The admin commands of the CLI: each calls ``AdminService`` once and returns an ``Output``.

Rules
1. A command does no parsing (``proxy/cli.py`` does) and no printing (``main`` prints): it turns
   parsed arguments into one service call and the result into both renderings.
2. ``Output.data`` is exactly the admin API's JSON (``limits.admin_results``), or ``None`` where
   the API answers 204 No Content; then ``--json`` prints nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from limits.admin import AdminService
from limits.admin_results import config_to_dict, group_to_dict, key_to_dict, user_to_dict
from limits.money import format_usd
from proxy import cli_format as fmt

__all__ = [
    "Command",
    "Output",
    "groups_add_member",
    "groups_create",
    "groups_delete",
    "groups_list",
    "groups_remove_member",
    "keys_create",
    "keys_list",
    "keys_revoke",
    "limits_group",
    "limits_set",
    "limits_show",
    "limits_user",
    "report",
    "usage",
    "users_create",
    "users_delete",
    "users_list",
]


@dataclass(frozen=True, slots=True)
class Output:
    data: Any  # JSON-able, or None for "no body"
    text: str


Command = Callable[[AdminService, argparse.Namespace], Awaitable[Output]]


async def users_create(admin: AdminService, args: argparse.Namespace) -> Output:
    user = await admin.create_user(args.name, args.group)
    return Output(user_to_dict(user), fmt.users_table([user]))


async def users_list(admin: AdminService, args: argparse.Namespace) -> Output:
    users = await admin.list_users()
    return Output([user_to_dict(u) for u in users], fmt.users_table(users))


async def users_delete(admin: AdminService, args: argparse.Namespace) -> Output:
    await admin.delete_user(args.name)
    return Output(None, f"deleted user {args.name} (keys revoked, ledger kept)")


async def groups_create(admin: AdminService, args: argparse.Namespace) -> Output:
    group = await admin.create_group(args.name)
    return Output(group_to_dict(group), fmt.groups_table([group]))


async def groups_list(admin: AdminService, args: argparse.Namespace) -> Output:
    groups = await admin.list_groups()
    return Output([group_to_dict(g) for g in groups], fmt.groups_table(groups))


async def groups_delete(admin: AdminService, args: argparse.Namespace) -> Output:
    await admin.delete_group(args.name)
    return Output(None, f"deleted group {args.name}")


async def groups_add_member(admin: AdminService, args: argparse.Namespace) -> Output:
    group = await admin.add_member(args.group, args.user)
    return Output(group_to_dict(group), f"{args.user} is a member of {args.group}")


async def groups_remove_member(admin: AdminService, args: argparse.Namespace) -> Output:
    await admin.remove_member(args.group, args.user)
    return Output(None, f"removed {args.user} from {args.group}")


async def keys_create(admin: AdminService, args: argparse.Namespace) -> Output:
    created = await admin.create_key(args.user, args.label)
    return Output(created.to_dict(), fmt.created_key_text(created))


async def keys_list(admin: AdminService, args: argparse.Namespace) -> Output:
    keys = await admin.list_keys(args.user)
    return Output([key_to_dict(k) for k in keys], fmt.keys_table(keys))


async def keys_revoke(admin: AdminService, args: argparse.Namespace) -> Output:
    await admin.revoke_key(args.id)
    return Output(None, f"revoked key {args.id}")


async def limits_show(admin: AdminService, args: argparse.Namespace) -> Output:
    overview = await admin.limits()
    return Output(overview.to_dict(), fmt.limits_text(overview))


async def limits_set(admin: AdminService, args: argparse.Namespace) -> Output:
    changes: dict[str, object] = {}
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    if args.period is not None:
        changes["period"] = args.period
    if "default_limit" in vars(args):  # absent unless --default was given (None = no default)
        changes["default_limit_micros"] = args.default_limit
    if not changes:
        hint = "give --enabled, --disabled, --period or --default"
        raise ValueError(f"limits set: nothing to change ({hint})")
    config = await admin.update_limit_config(changes)
    return Output(config_to_dict(config), fmt.config_text(config))


async def limits_user(admin: AdminService, args: argparse.Namespace) -> Output:
    if args.clear:
        await admin.clear_user_limit(args.name)
        return Output(None, f"cleared the limit of user {args.name}")
    override = await admin.set_user_limit(args.name, args.amount)
    return Output(override.to_dict(), f"limit of user {args.name}: {format_usd(args.amount)}")


async def limits_group(admin: AdminService, args: argparse.Namespace) -> Output:
    if args.clear:
        await admin.clear_group_limit(args.name)
        return Output(None, f"cleared the limit of group {args.name}")
    override = await admin.set_group_limit(args.name, args.amount)
    return Output(override.to_dict(), f"limit of group {args.name}: {format_usd(args.amount)}")


async def usage(admin: AdminService, args: argparse.Namespace) -> Output:
    status = await admin.usage(args.name)
    return Output(status.to_dict(), fmt.status_text(status))


async def report(admin: AdminService, args: argparse.Namespace) -> Output:
    spend = await admin.spend(args.period, args.group_by)
    return Output(spend.to_dict(), fmt.report_text(spend))
