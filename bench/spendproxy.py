"""spend-proxy as a benchmark target: its config file, its admin setup, its server process.

Rules
1. spend-proxy is driven only through its public surface: a generated TOML config (SPEC §7),
   ``spend-proxy migrate``, the admin commands ``users create``, ``keys create --json`` and
   ``limits set --enabled --default USD`` (SPEC §6), then ``spend-proxy serve --config``.
2. Limits are enabled with a generous default, so every request runs the real limit check (and
   answers carry ``x-spend-limit-micros``) but none is refused during the run.
3. The benchmark model gets an explicit price in the config, so results do not depend on which
   models litellm's price map knows.
4. Variants that share a storage (Redis + Postgres in ``check`` and in ``reserve`` mode) share
   its database, user and key; each variant is its own process with its own config.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services import Service, ServiceError, free_port

__all__ = ["VARIANTS", "Backend", "Variant", "setup_backend", "variant_service", "write_config"]

MODEL = "gpt-4o-mini"
USER = "bench"
DEFAULT_LIMIT_USD = "1000000"  # $1M a month: far above what a run can spend


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    storage: str  # "redis-pg" | "sqlite"
    mode: str  # enforcement mode: "check" | "reserve"


VARIANTS = {
    v.name: v
    for v in (
        Variant("sp-redis-pg", "redis-pg", "check"),
        Variant("sp-redis-pg-reserve", "redis-pg", "reserve"),
        Variant("sp-sqlite", "sqlite", "check"),
    )
}


@dataclass
class Backend:
    """One storage set-up, shared by the variants that use it."""

    storage: str
    workdir: Path
    database_url: str | None = None  # None: embedded SQLite in workdir
    redis_url: str | None = None
    key: str = ""


def write_config(
    path: Path, backend: Backend, *, port: int, mode: str, upstream_url: str, upstream_key: str
) -> None:
    """The TOML file spend-proxy reads (SPEC §7); the spool file is named after the config."""
    lines = [
        f'admin_token = "bench-{secrets.token_hex(16)}"',
        "",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "workers = 1",
        "",
        "[storage]",
        f'spool_path = "{path.with_suffix(".spool")}"',
    ]
    if backend.database_url is not None:
        lines.append(f'database_url = "{backend.database_url}"')
    else:
        lines.append(f'sqlite_path = "{backend.workdir / "spend-proxy.db"}"')
    if backend.redis_url is not None:
        lines.append(f'redis_url = "{backend.redis_url}"')
    lines += ["", "[enforcement]", f'mode = "{mode}"', ""]
    lines += ["[upstreams.mock]", f'base_url = "{upstream_url}/v1"', f'api_key = "{upstream_key}"']
    lines += ['models = ["*"]', "", f'[prices."{MODEL}"]', "input = 0.15", "output = 0.60", ""]
    path.write_text("\n".join(lines))


def _cli(executable: str, config: Path, *args: str) -> str:
    argv = [executable, *args, "--config", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        shown = " ".join(argv[1:])
        raise ServiceError(f"`spend-proxy {shown}` exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def setup_backend(executable: str, backend: Backend, upstream_url: str) -> None:
    """Migrate the database, create the user and its key, enable limits; sets ``backend.key``."""
    config = backend.workdir / f"setup-{backend.storage}.toml"
    write_config(config, backend, port=0, mode="check", upstream_url=upstream_url, upstream_key="")
    _cli(executable, config, "migrate")
    _cli(executable, config, "users", "create", USER)
    created = json.loads(_cli(executable, config, "keys", "create", USER, "--json"))
    backend.key = str(created["key"])
    _cli(executable, config, "limits", "set", "--enabled", "--default", DEFAULT_LIMIT_USD)


def variant_service(
    executable: str, variant: Variant, backend: Backend, *, upstream_url: str, upstream_key: str
) -> Service:
    """The server process of one variant (not started yet)."""
    port = free_port()
    config = backend.workdir / f"{variant.name}.toml"
    write_config(
        config,
        backend,
        port=port,
        mode=variant.mode,
        upstream_url=upstream_url,
        upstream_key=upstream_key,
    )
    return Service(
        name=variant.name,
        argv=[executable, "serve", "--config", str(config)],
        log_path=backend.workdir / f"{variant.name}.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
        cwd=backend.workdir,
    )
