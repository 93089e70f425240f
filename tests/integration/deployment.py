"""A shared-storage deployment: N ``spend-proxy serve`` replicas on one Redis and one PostgreSQL,
in front of the fake upstream, with accounts made through ``AdminService``.

The config is one TOML file, written here, that every replica and every CLI command reads; each
replica gets its own spool file through the environment (``processes.ProxyProcess``), as an
operator running several processes on one machine would do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from limits import PriceTable
from limits.admin import AdminService
from limits.store.clock import SystemClock
from limits.store.prices import load_price_table
from limits.store.sql import SqlStore
from proxy.app import price_overrides
from proxy.settings import load_settings
from tests.integration.processes import CliResult, ProxyProcess, run_cli
from tests.integration.services import free_port
from tests.integration.upstream import UsageUpstream

__all__ = [
    "ADMIN_TOKEN",
    "Account",
    "Deployment",
    "Options",
    "create_accounts",
    "propagation",
    "write_config",
]

ADMIN_TOKEN = "integration-admin-token"
MODELS = ["gpt-4o-mini", "gpt-4o", "test-model", "text-embedding-3-small"]
DEFAULT_LIMIT_MICROS = 1_000_000_000  # $1,000 a month: on, and never reached by accident


@dataclass(frozen=True, slots=True)
class Options:
    """The knobs the tests turn (SPEC §7 keys)."""

    refresh_interval_s: float = 1.0
    ledger_flush_interval_s: float = 0.1
    ledger_queue_max: int = 10_000
    cache_poll_interval_s: float = 1.0  # the default: revocation must show within 2 s with it
    mode: str = "check"
    shutdown_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Account:
    user_id: int
    key: str
    key_id: int


def write_config(
    path: Path, *, database_url: str, redis_url: str, upstream_url: str, options: Options
) -> None:
    models = ", ".join(f'"{model}"' for model in MODELS)
    path.write_text(
        f"""admin_token = "{ADMIN_TOKEN}"
log_level = "INFO"

[server]
host = "127.0.0.1"
shutdown_timeout_s = {options.shutdown_timeout_s}

[storage]
database_url = "{database_url}"
redis_url = "{redis_url}"
refresh_interval_s = {options.refresh_interval_s}
ledger_flush_interval_s = {options.ledger_flush_interval_s}
ledger_queue_max = {options.ledger_queue_max}
cache_poll_interval_s = {options.cache_poll_interval_s}
spool_path = "{path.parent / "spool.jsonl"}"

[enforcement]
mode = "{options.mode}"

[upstreams.fake]
base_url = "{upstream_url}"
api_key = "sk-upstream-integration"
models = [{models}]

[prices."test-model"]
input = 1.25
output = 3.5
cache_read = 0.125
"""
    )


async def create_accounts(database_url: str, names: Sequence[str]) -> dict[str, Account]:
    """Migrate, turn limits on (monthly default), and make each user with one key."""
    store = await SqlStore.connect(database_url)
    try:
        await store.migrate()
        admin = AdminService(store, clock=SystemClock(), spent=store.user_total)
        changes = {"enabled": True, "period": "month", "default_limit_micros": DEFAULT_LIMIT_MICROS}
        await admin.update_limit_config(changes)
        accounts = {}
        for name in names:
            user = await admin.create_user(name)
            created = await admin.create_key(name, "integration")
            accounts[name] = Account(user.id, created.key, created.record.id)
        return accounts
    finally:
        await store.close()


@dataclass
class Deployment:
    workdir: Path
    config: Path
    database_url: str
    redis_url: str
    upstream: UsageUpstream
    accounts: dict[str, Account]
    options: Options
    proxies: list[ProxyProcess] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [proxy.url for proxy in self.proxies]

    @property
    def keys(self) -> dict[str, str]:
        return {name: account.key for name, account in self.accounts.items()}

    @property
    def user_ids(self) -> dict[str, int]:
        return {name: account.user_id for name, account in self.accounts.items()}

    def prices(self) -> PriceTable:
        """The price table the replicas build from the same config."""
        return load_price_table(price_overrides(load_settings(self.config)))

    def add_replica(self, *extra_args: str) -> ProxyProcess:
        """Start one more ``spend-proxy serve`` on a free port (wait with ``wait_ready``)."""
        name = f"proxy-{len(self.proxies)}"
        proxy = ProxyProcess(name, self.config, free_port(), self.workdir, extra_args=extra_args)
        self.proxies.append(proxy)
        proxy.start()
        return proxy

    async def cli(self, *args: str) -> CliResult:
        """``spend-proxy <args> --json --config <the deployment's config>``."""
        return await run_cli(*args, "--json", "--config", str(self.config))


async def propagation(
    deployment: Deployment, cli_args: Sequence[str], probe: Callable[[str], Awaitable[bool]]
) -> list[float]:
    """Run an admin CLI command while watching ``meta.revision`` (bumped by every admin write in
    the same transaction); once the change is committed, poll every replica (by URL) until
    ``probe`` sees it. Seconds from the commit to each replica, sorted."""
    conn = await asyncpg.connect(deployment.database_url, timeout=10)
    try:
        revision = "SELECT revision FROM meta"
        before = await conn.fetchval(revision)
        cli = asyncio.create_task(deployment.cli(*cli_args))
        committed_at: float | None = None
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 30  # the CLI starts a Python process: slow on busy hosts
        while len(seen) < len(deployment.urls) and time.monotonic() < deadline:
            if committed_at is None and await conn.fetchval(revision) != before:
                committed_at = time.monotonic()
            for url in deployment.urls:
                if committed_at is not None and url not in seen and await probe(url):
                    seen[url] = time.monotonic() - committed_at
            await asyncio.sleep(0.01)
        result = await cli
    finally:
        await conn.close()
    assert result.returncode == 0, result.stderr
    assert committed_at is not None, f"{cli_args} changed nothing in the database"
    assert len(seen) == len(deployment.urls), f"only {sorted(seen)} saw {cli_args}"
    return sorted(seen.values())
