"""The argparse grammar of ``spend-proxy`` (SPEC §6); ``proxy/cli.py`` runs what it parses.

Rules
1. ``--config`` and ``--json`` belong to every leaf command, so they go *after* the subcommand
   (``spend-proxy keys create alice --json --config prod.toml``).
2. Each admin leaf sets ``handler`` to its function in ``proxy.cli_commands``; ``serve`` and
   ``migrate`` set ``handler`` to None and are run by ``proxy/cli.py`` itself.
3. Dollar amounts are parsed here, exactly (``limits.money.parse_usd``): bad input is a usage
   error (exit 2, usage line, one-line message) before anything touches the database.
"""

from __future__ import annotations

import argparse

from limits.money import parse_usd
from limits.periods import PeriodKind
from proxy import cli_commands as cmd

__all__ = ["build_parser"]

_Actions = argparse._SubParsersAction  # the type argparse gives subcommand collections


def _usd(text: str) -> int:
    try:
        return parse_usd(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _usd_or_none(text: str) -> int | None:
    return None if text.strip().lower() == "none" else _usd(text)


def _leaf(
    actions: _Actions[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: cmd.Command | None,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--config", metavar="PATH", help="TOML config file")
    parser.add_argument("--json", action="store_true", help="print JSON, as the admin API")
    parser.set_defaults(handler=handler)
    return parser


def _actions(
    commands: _Actions[argparse.ArgumentParser], name: str, help_text: str
) -> _Actions[argparse.ArgumentParser]:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _add_users(commands: _Actions[argparse.ArgumentParser]) -> None:
    actions = _actions(commands, "users", "manage users")
    create = _leaf(actions, "create", "create a user", cmd.users_create)
    create.add_argument("name")
    create.add_argument("--group", action="append", default=[], metavar="GROUP")
    _leaf(actions, "list", "list users", cmd.users_list)
    delete = _leaf(
        actions, "delete", "delete a user: revoke keys, keep the ledger", cmd.users_delete
    )
    delete.add_argument("name")


def _add_groups(commands: _Actions[argparse.ArgumentParser]) -> None:
    actions = _actions(commands, "groups", "manage groups")
    _leaf(actions, "create", "create a group", cmd.groups_create).add_argument("name")
    _leaf(actions, "list", "list groups", cmd.groups_list)
    _leaf(actions, "delete", "delete a group", cmd.groups_delete).add_argument("name")
    for name, handler in (
        ("add-member", cmd.groups_add_member),
        ("remove-member", cmd.groups_remove_member),
    ):
        member = _leaf(actions, name, f"{name.replace('-', ' ')} of a group", handler)
        member.add_argument("group")
        member.add_argument("user")


def _add_keys(commands: _Actions[argparse.ArgumentParser]) -> None:
    actions = _actions(commands, "keys", "manage API keys")
    create = _leaf(actions, "create", "create a key (printed once)", cmd.keys_create)
    create.add_argument("user")
    create.add_argument("--label")
    _leaf(actions, "list", "list a user's keys", cmd.keys_list).add_argument("user")
    _leaf(actions, "revoke", "revoke a key", cmd.keys_revoke).add_argument("id", type=int)


def _add_limits(commands: _Actions[argparse.ArgumentParser]) -> None:
    actions = _actions(commands, "limits", "show and change spend limits")
    _leaf(actions, "show", "show the limit config and overrides", cmd.limits_show)
    change = _leaf(actions, "set", "change only the given settings", cmd.limits_set)
    switch = change.add_mutually_exclusive_group()
    switch.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    switch.add_argument("--disabled", dest="enabled", action="store_const", const=False)
    change.add_argument("--period", choices=[kind.value for kind in PeriodKind])
    change.add_argument(
        "--default",
        dest="default_limit",
        type=_usd_or_none,
        default=argparse.SUPPRESS,  # absent means "keep"; "none" means "no default"
        metavar="USD|none",
    )
    for target, handler in (("user", cmd.limits_user), ("group", cmd.limits_group)):
        override = _leaf(actions, target, f"set or clear a {target}'s limit", handler)
        override.add_argument("name")
        amount = override.add_mutually_exclusive_group(required=True)
        amount.add_argument("amount", nargs="?", type=_usd, metavar="USD")
        amount.add_argument("--clear", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line of ``spend-proxy``."""
    parser = argparse.ArgumentParser(
        prog="spend-proxy", description="Per-user spend limits in front of LLM APIs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = _leaf(commands, "serve", "run the proxy", None)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    _leaf(commands, "migrate", "create or upgrade the database schema", None)
    _add_users(commands)
    _add_groups(commands)
    _add_keys(commands)
    _add_limits(commands)
    _leaf(commands, "usage", "a user's spend status", cmd.usage).add_argument("name")
    report = _leaf(commands, "report", "spend from the ledger", cmd.report)
    report.add_argument("--period", choices=["current", "previous"], default="current")
    report.add_argument("--by", dest="group_by", choices=["user", "model", "group"], default="user")
    return parser
