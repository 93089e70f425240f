"""``spend-proxy`` as real OS processes: ``serve`` replicas and one-shot CLI commands.

Rules
1. Each replica is ``.venv/bin/spend-proxy serve --config <toml> --port <free>`` in its own
   session, its output in a log file, its environment free of the developer's ``SPEND_PROXY_*``
   variables (only the ones the test sets), its working directory the test's temporary one.
2. Waiting is polling with a deadline; a process that exits while being waited for fails the
   wait at once, quoting its log.
3. ``stop`` sends SIGTERM, waits (bounded), then SIGKILL: every process started is gone at the
   end of the test, whatever happened. The exit status is returned for the test to check
   (SPEC §8 inv. 4: SIGTERM drains and exits 0).
4. CLI commands run through ``asyncio`` subprocesses, so the event loop (which also serves the
   fake upstream) never blocks on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

__all__ = ["CliResult", "ProxyProcess", "clean_env", "log_tail", "run_cli", "spend_proxy_bin"]

_STOP_TIMEOUT_S = 45.0  # generous: CI machines are shared and shutdown drains the ledger
_CLI_TIMEOUT_S = 60.0


def spend_proxy_bin() -> Path:
    """The ``spend-proxy`` console script of the interpreter running the tests."""
    path = Path(sys.executable).with_name("spend-proxy")
    assert path.is_file(), f"{path} is missing: install the project (make install)"
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``SPEND_PROXY_*`` variables, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SPEND_PROXY")}
    return env | (extra or {})


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ProxyProcess:
    """One ``spend-proxy serve`` process (see the module rules)."""

    def __init__(
        self,
        name: str,
        config: Path,
        port: int,
        workdir: Path,
        *,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.spool = workdir / f"{name}.spool.jsonl"  # its own (SPEND_PROXY_STORAGE__...)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{name}.log"
        self._argv = [str(spend_proxy_bin()), "serve", "--config", str(config)]
        self._argv += ["--port", str(port), *extra_args]
        self._env = clean_env({"SPEND_PROXY_STORAGE__SPOOL_PATH": str(self.spool)})
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} was not started"
        return self._process.pid

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._workdir,
                start_new_session=True,
            )

    def exited(self) -> int | None:
        return None if self._process is None else self._process.poll()

    async def wait_ready(self, timeout_s: float = 60.0, path: str = "/readyz") -> None:
        """Poll ``path`` until it answers 200 (rule 2)."""
        deadline = time.monotonic() + timeout_s
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                code = self.exited()
                if code is not None:
                    raise AssertionError(f"{self.name} exited with {code}:\n{log_tail(self.log)}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + path) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} not ready in {timeout_s} s:\n{log_tail(self.log)}")

    def signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    async def wait_exit(self, timeout_s: float = _STOP_TIMEOUT_S) -> int | None:
        """The exit status once the process ended, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.exited()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        return None

    async def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait, SIGKILL (rule 3); the exit status (None if never started)."""
        process = self._process
        if process is None:
            return None
        self.signal(signal.SIGTERM)
        code = await self.wait_exit(timeout_s)
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: workers too
            process.wait(timeout_s)
        return process.returncode


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run ``spend-proxy <args>`` to completion (rule 4), bounded by a timeout."""
    process = await asyncio.create_subprocess_exec(
        str(spend_proxy_bin()),
        *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(env),
    )
    try:
        async with asyncio.timeout(_CLI_TIMEOUT_S):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())
