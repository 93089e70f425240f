"""Running the proxy: ``serve(settings)`` for ``spend-proxy serve`` (SPEC §6, §8 inv. 4).

Rules
1. One worker (the default): the app runs in this process, on uvloop when it is installed.
2. ``workers > 1`` needs shared storage (a PostgreSQL ``database_url`` and a ``redis_url``): the
   embedded SQLite file and in-process counters belong to one process, so that is refused with a
   ``ConfigError`` (the CLI prints it on one line). Each worker is a ``spawn``-ed process running
   the whole app on the same port (``SO_REUSEPORT``: the kernel spreads connections) with its own
   spool file (``<spool_path>.<n>``); the parent forwards SIGTERM/SIGINT to them and waits.
3. SIGTERM/SIGINT: aiohttp stops accepting, lets in-flight calls finish for at most
   ``server.shutdown_timeout_s``, then the app's cleanup drains the ledger (bounded the same way)
   and the process exits 0. Further signals during that shutdown are ignored (``_serve_app``).
4. Logging is configured here, once per process (``proxy/logs.py``), never at import.
5. Metrics with several workers: before spawning them the parent creates a fresh temporary
   directory and sets ``PROMETHEUS_MULTIPROC_DIR`` to it, so every worker's prometheus-client
   starts in multiprocess mode (``proxy/metrics.py`` rule 5); the variable must be set before
   prometheus-client is imported, which a spawned worker does after it inherits the variable.
   As each worker ends, its live gauges are dropped; the directory is deleted on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from limits.errors import ConfigError
from proxy.app import create_app
from proxy.logs import configure_logging
from proxy.settings import ServerSettings, Settings

__all__ = ["check_workers", "serve"]

log = logging.getLogger(__name__)


def check_workers(settings: Settings) -> None:
    """Raise ``ConfigError`` unless the storage can be shared by ``server.workers`` (rule 2)."""
    storage = settings.storage
    if settings.server.workers == 1:
        return
    database_url = storage.database_url or ""
    if storage.redis_url is None or not database_url.startswith(("postgres://", "postgresql")):
        raise ConfigError(
            f"server.workers = {settings.server.workers} needs shared storage: set "
            "storage.database_url to PostgreSQL and storage.redis_url; the embedded SQLite "
            "file and in-process counters serve a single process (use workers = 1)"
        )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def _serve_app(app: web.Application, server: ServerSettings, *, reuse_port: bool) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then shut down gracefully (rule 3).

    Not ``web.run_app``: its signal handler raises ``GracefulExit`` on *every* signal, also
    while it is already shutting down, and a second one aborts the shutdown: in-flight calls
    are dropped and the process exits 1. Second signals are common: systemd signals every
    process of a service and the parent forwards the signal too; Ctrl-C reaches the whole
    process group. Here a signal only sets an event, so repeating it changes nothing.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=server.shutdown_timeout_s, keepalive_timeout=75.0
    )
    await runner.setup()  # the app's startup: a failure propagates (exit status 1)
    try:
        site = web.TCPSite(runner, server.host, server.port, reuse_port=reuse_port)
        await site.start()
        log.info("======== Running on %s ========", site.name)
        await stop.wait()
    finally:
        await runner.cleanup()  # stop accepting, wait for in-flight calls, drain the ledger
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _run(settings: Settings, worker: int | None) -> None:
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        app = create_app(settings, worker=worker)
        loop.run_until_complete(_serve_app(app, settings.server, reuse_port=worker is not None))
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _worker_main(settings_data: dict[str, Any], worker: int) -> None:
    settings = Settings(**settings_data)
    logs = configure_logging(settings)
    try:
        _run(settings, worker)
    finally:
        logs.close()


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def _metrics_dir() -> Iterator[str]:
    """A fresh multiprocess metrics directory in the environment, for the workers (rule 5)."""
    previous = os.environ.get(MULTIPROC_ENV)
    path = tempfile.mkdtemp(prefix="spend-proxy-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def _reap(workers: Sequence[BaseProcess], metrics_dir: str) -> None:
    """Wait for every worker; as each one ends, drop its live gauges (rule 5)."""
    pending = {process.sentinel: process for process in workers}
    while pending:
        ended = multiprocessing.connection.wait(list(pending))
        for sentinel in [sentinel for sentinel in pending if sentinel in ended]:
            process = pending.pop(sentinel)
            process.join()
            if process.pid is not None:
                mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]


def _run_workers(settings: Settings, metrics_dir: str) -> int:
    context = multiprocessing.get_context("spawn")
    # Settings travel as data: load_settings builds a per-file subclass that cannot be pickled.
    data = settings.model_dump()
    workers = [
        context.Process(target=_worker_main, args=(data, n), name=f"spend-proxy-worker-{n}")
        for n in range(settings.server.workers)
    ]
    for process in workers:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _reap(workers, metrics_dir)
    failed = [p.name for p in workers if p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if failed:
        log.error("workers exited with errors: %s", ", ".join(failed))
    return 1 if failed else 0


def serve(settings: Settings) -> int:
    """Run the proxy until SIGTERM/SIGINT; returns the exit status. Raises ``ConfigError``."""
    check_workers(settings)
    logs = configure_logging(settings)
    try:
        if settings.server.workers == 1:
            _run(settings, None)
            return 0
        with _metrics_dir() as metrics_dir:
            return _run_workers(settings, metrics_dir)
    finally:
        logs.close()
