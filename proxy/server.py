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
   and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from typing import Any

from aiohttp import web

from limits.errors import ConfigError
from proxy.app import create_app
from proxy.settings import Settings

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


def _run(settings: Settings, worker: int | None) -> None:
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    server = settings.server
    web.run_app(
        create_app(settings, worker=worker),
        host=server.host,
        port=server.port,
        shutdown_timeout=server.shutdown_timeout_s,
        reuse_port=worker is not None,
        access_log=None,
        print=lambda message: log.info("%s", message),
        loop=loop,
    )


def _worker_main(settings_data: dict[str, Any], worker: int) -> None:
    settings = Settings(**settings_data)
    _configure_logging(settings)
    _run(settings, worker)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )


def _run_workers(settings: Settings) -> int:
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
    for process in workers:
        process.join()
    failed = [p.name for p in workers if p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if failed:
        log.error("workers exited with errors: %s", ", ".join(failed))
    return 1 if failed else 0


def serve(settings: Settings) -> int:
    """Run the proxy until SIGTERM/SIGINT; returns the exit status. Raises ``ConfigError``."""
    check_workers(settings)
    _configure_logging(settings)
    if settings.server.workers == 1:
        _run(settings, None)
        return 0
    return _run_workers(settings)
