"""The processes under test for one run: mock upstream, pass-through, spend-proxy variants.

Lifecycle
1. ``start``: the mock upstream and the pass-through first (without them nothing is measured);
   then, for each requested spend-proxy variant, its storage (scratch Postgres database and Redis
   db, or an embedded SQLite file), its admin set-up through the CLI and its server process.
   A variant that cannot start is recorded in ``unavailable`` with the reason, and the run goes
   on without it (so the bench works before and while spend-proxy is being built).
2. Every target must answer one real chat completion (the probe) before it is measured.
3. ``measure_cell`` runs ``loadgen.py`` as a separate process against one target.
4. ``close`` stops every process this run started (SIGTERM, then SIGKILL), then drops the scratch
   database and empties the borrowed Redis db. It is safe to call after a partial start.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampling import py_spy, record, summarize
from services import Service, ServiceError, free_port, http_post_json, log_tail
from spendproxy import MODEL, USER, VARIANTS, Backend, setup_backend, variant_service
from storage import PostgresDatabase, RedisDatabase

__all__ = ["Harness", "Target"]

BENCH_DIR = Path(__file__).resolve().parent
SPEND_HEADERS = ("x-spend-limit-micros", "x-spend-spent-micros")
PROBE_BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "ping"}]}
).encode()


@dataclass
class Target:
    name: str
    service: Service
    url: str  # the chat completions URL
    key: str = ""
    expect_headers: tuple[str, ...] = ()


@dataclass
class Harness:
    run_dir: Path
    spend_proxy: str  # path of the spend-proxy executable
    chunks: int
    upstream_key: str = field(default_factory=lambda: f"sk-bench-upstream-{secrets.token_hex(8)}")
    services: list[Service] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    backends: dict[str, Backend] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    broken_storage: dict[str, str] = field(default_factory=dict)
    postgres: PostgresDatabase | None = None
    redis: RedisDatabase | None = None
    upstream_url: str = ""
    mock_pid: int = 0

    def _python_service(self, name: str, script: str, ready_path: str, *args: str) -> Service:
        port = free_port()
        service = Service(
            name=name,
            argv=[sys.executable, str(BENCH_DIR / script), "--port", str(port), *args],
            log_path=self.run_dir / f"{name}.log",
            ready_url=f"http://127.0.0.1:{port}{ready_path}",
        )
        self.services.append(service)
        service.start()
        return service

    def start(self, variants: list[str]) -> None:
        mock_args = ["--chunks", str(self.chunks), "--api-key", self.upstream_key]
        mock = self._python_service("mock", "mock_upstream.py", "/health", *mock_args)
        mock.wait_ready()
        self.mock_pid = mock.pid
        self.upstream_url = mock.ready_url.removesuffix("/health")
        relay_args = ["--upstream", self.upstream_url, "--upstream-key", self.upstream_key]
        relay = self._python_service("passthrough", "passthrough.py", "/healthz", *relay_args)
        relay.wait_ready()
        self._add_target(Target("passthrough", relay, relay.ready_url.replace("/healthz", "")))
        for name in variants:
            try:
                self._start_variant(name)
            except (ServiceError, OSError, RuntimeError, ValueError, KeyError) as exc:
                self.unavailable[name] = str(exc) or type(exc).__name__
                print(f"[bench] {name}: not measured: {self.unavailable[name]}", file=sys.stderr)

    def _add_target(self, target: Target) -> None:
        target.url += "/v1/chat/completions"
        status, body = http_post_json(target.url, PROBE_BODY, target.key)
        if status != 200 or b"prompt_tokens" not in body:
            raise ServiceError(f"probe of {target.name} got {status}: {body[:300]!r}")
        self.targets.append(target)

    def _start_variant(self, name: str) -> None:
        variant = VARIANTS[name]
        backend = self._backend(variant.storage)
        service = variant_service(
            self.spend_proxy,
            variant,
            backend,
            upstream_url=self.upstream_url,
            upstream_key=self.upstream_key,
        )
        self.services.append(service)
        service.start()
        service.wait_ready(timeout_s=60)
        url = service.ready_url.removesuffix("/readyz")
        self._add_target(Target(name, service, url, backend.key, SPEND_HEADERS))

    def _backend(self, storage: str) -> Backend:
        if storage in self.backends:
            return self.backends[storage]
        if storage in self.broken_storage:
            raise ServiceError(self.broken_storage[storage])
        try:
            backend = self._new_backend(storage)
        except (ServiceError, OSError, RuntimeError, ValueError, KeyError) as exc:
            self.broken_storage[storage] = str(exc) or type(exc).__name__
            raise
        self.backends[storage] = backend
        return backend

    def _new_backend(self, storage: str) -> Backend:
        check = [self.spend_proxy, "serve", "--help"]
        if subprocess.run(check, capture_output=True, timeout=60, check=False).returncode != 0:
            raise ServiceError(f"`{' '.join(check)}` failed: spend-proxy's server is not built yet")
        workdir = self.run_dir / storage
        workdir.mkdir()
        backend = Backend(storage=storage, workdir=workdir)
        if storage == "redis-pg":
            self.postgres, self.redis = PostgresDatabase(), RedisDatabase()
            self.postgres.create()
            self.redis.claim()
            backend.database_url, backend.redis_url = self.postgres.url, self.redis.url
        setup_backend(self.spend_proxy, backend, self.upstream_url)
        return backend

    def measure_cell(
        self, target: Target, *, stream: bool, concurrency: int, load: dict[str, Any]
    ) -> dict[str, Any]:
        """Run the load generator once; returns the cell (its ``result`` or its ``error``)."""
        cell: dict[str, Any] = {"target": target.name, "stream": stream}
        cell["concurrency"] = concurrency
        process = target.service.process
        if process is None or process.poll() is not None:
            cell["error"] = f"process gone: {log_tail(target.service.log_path, 5)}"
            return cell
        argv = self._loadgen_argv(target, stream, concurrency, load)
        timeout_s = load["duration"] + load["warmup"] + 60
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            cell["error"] = f"loadgen exited {done.returncode}: {done.stderr.strip()[-500:]}"
        else:
            cell["result"] = json.loads(done.stdout)
        return cell

    def profile_cell(
        self, target: Target, *, stream: bool, concurrency: int, load: dict[str, Any], out: Path
    ) -> list[str]:
        """Load ``target`` as in a cell while py-spy samples it; returns the summary lines."""
        executable = py_spy()
        if executable is None:
            return ["  py-spy not found (.venv/bin/pip install py-spy)"]
        argv = self._loadgen_argv(target, stream, concurrency, load)
        with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as gen:
            time.sleep(load["warmup"])
            sampler = record(executable, target.service.pid, load["duration"], out)
            sampler.wait(load["duration"] + 60)
            gen.wait(load["duration"] + 60)
        if sampler.returncode != 0 or not out.exists():
            return [f"  py-spy failed (exit {sampler.returncode}); it needs ptrace rights"]
        return summarize(out)

    def _loadgen_argv(
        self, target: Target, stream: bool, concurrency: int, load: dict[str, Any]
    ) -> list[str]:
        argv = [sys.executable, str(BENCH_DIR / "loadgen.py"), "--url", target.url]
        argv += ["--key", target.key, "--model", MODEL, "-c", str(concurrency)]
        argv += ["-d", str(load["duration"]), "-w", str(load["warmup"])]
        argv += ["--watch", f"proxy={target.service.pid}", "--watch", f"upstream={self.mock_pid}"]
        for header in target.expect_headers:
            argv += ["--expect-header", header]
        if stream:
            argv += ["--stream"] + ([] if load["include_usage"] else ["--no-include-usage"])
        return argv

    def spent_micros(self) -> dict[str, Any]:
        """Per storage: what spend-proxy itself says the bench user spent (``usage --json``)."""
        spent: dict[str, Any] = {}
        for storage, backend in self.backends.items():
            config = backend.workdir / f"setup-{storage}.toml"
            argv = [self.spend_proxy, "usage", USER, "--json", "--config", str(config)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            try:
                spent[storage] = json.loads(done.stdout).get("spent_micros")
            except ValueError:
                spent[storage] = f"usage failed: {done.stderr.strip()[-200:]}"
        return spent

    def close(self) -> dict[str, int | None]:
        """Stop everything this run started; returns each process's exit status."""
        statuses = {s.name: s.stop() for s in reversed(self.services)}
        if self.postgres is not None:
            self.postgres.drop()
        if self.redis is not None:
            self.redis.release()
        return statuses
