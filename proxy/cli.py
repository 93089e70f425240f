"""``spend-proxy``: the command line (SPEC §6). ``main(argv) -> exit status``.

Rules
1. Admin commands work against the configured database with no server running: each opens a
   ``SqlStore`` from ``storage.effective_database_url``, migrates it if needed, runs one
   ``AdminService`` call (``proxy.cli_commands``) and closes the store.
2. The CLI's spend is the ledger's (``SqlStore.user_total``): without a server there are no
   live counters, and the ledger is the source of truth anyway (SPEC §8).
3. ``--json`` prints the admin API's JSON; otherwise tables for people. Commands the API answers
   with 204 print nothing under ``--json``.
4. Bad input exits non-zero with one line on stderr (argparse adds a usage line first for
   grammar errors), never a traceback: configuration, validation, not-found and store errors
   are all caught here.
5. ``serve`` imports the server lazily, so admin commands never load aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from limits.admin import AdminService
from limits.errors import LimitsError
from limits.store.clock import SystemClock
from limits.store.sql import SqlStore
from proxy.cli_commands import Output
from proxy.cli_parser import build_parser
from proxy.settings import Settings, load_settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status (0 ok, 1 failed, 2 usage error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage and the message (or --help)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        if args.command == "serve":
            return _serve(args)
        settings = load_settings(args.config)
        output = asyncio.run(_run(settings, args))
    except ValidationError as exc:
        return _fail("invalid configuration: " + _validation_summary(exc))
    except (LimitsError, FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    _print(output, as_json=args.json)
    return 0


def _fail(message: str) -> int:
    line = " ".join(message.split())
    print(f"spend-proxy: error: {line}", file=sys.stderr)
    return 1


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
        for error in exc.errors()
    )


def _print(output: Output, *, as_json: bool) -> None:
    if as_json:
        if output.data is not None:
            print(json.dumps(output.data, indent=2))
    elif output.text:
        print(output.text)


def _serve(args: argparse.Namespace) -> int:
    given = {"host": args.host, "port": args.port, "workers": args.workers}
    server_overrides = {name: value for name, value in given.items() if value is not None}
    overrides: dict[str, Any] = {"server": server_overrides} if server_overrides else {}
    settings = load_settings(args.config, **overrides)
    from proxy.server import serve  # rule 5: aiohttp is loaded for `serve` only

    return serve(settings)


async def _run(settings: Settings, args: argparse.Namespace) -> Output:
    store = await SqlStore.connect(settings.storage.effective_database_url)
    try:
        if args.command == "migrate":
            return await _migrate(store)
        await store.migrate()
        admin = AdminService(store, clock=SystemClock(), spent=store.user_total)
        output: Output = await args.handler(admin, args)
        return output
    finally:
        await store.close()


async def _migrate(store: SqlStore) -> Output:
    lines: list[str] = []
    applied = await store.migrate(lines.append)
    return Output({"applied": applied, "version": await store.schema_version()}, "\n".join(lines))
