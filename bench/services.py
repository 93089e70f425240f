"""Child processes of a benchmark run: start, wait until ready, stop.

Rules
1. Every server runs as its own OS process (no pinning), with stdout and stderr going to a log
   file in the run's directory, so a full pipe can never stall it and a failure can be shown.
2. Ready means an HTTP GET on the service's readiness path answered 200; a process that exits
   first, or a deadline that passes, is a :class:`ServiceError` quoting the log's tail.
3. ``stop`` sends SIGTERM, waits, then SIGKILL: only to the processes this run started.
4. Ports are picked by binding port 0 on loopback and releasing it just before use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Service", "ServiceError", "free_port", "http_get", "http_post_json", "log_tail"]


class ServiceError(Exception):
    """A service would not start, or a setup command failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; a refused connection is status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def http_post_json(url: str, body: bytes, key: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a JSON POST with a bearer key (the probe request)."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, repr(exc).encode()


@dataclass
class Service:
    """One server process of the run."""

    name: str
    argv: list[str]
    log_path: Path
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,  # a Ctrl-C in the terminal reaches run.py only
            )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode}:\n{log_tail(self.log_path)}"
                )
            status, _ = http_get(self.ready_url, timeout_s=1.0)
            if status == 200:
                return
            time.sleep(0.1)
        raise ServiceError(
            f"{self.name} not ready after {timeout_s:.0f}s:\n{log_tail(self.log_path)}"
        )

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Stop the process; returns its exit status (None if it was never started)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
