"""The composition root: ``create_app(settings)`` builds the whole proxy (STYLE §1, §5).

This is the only ``proxy`` module that imports ``limits.store`` (with ``proxy/cli.py``) and the
only one that turns ``Settings`` into domain values (``PriceTable``, ``Enforcer`` modes).

Rules
1. No module-level state: everything lives on the ``web.Application`` under typed keys
   (``proxy/keys.py``; the private ones below), created by ``create_app`` (pure values: router,
   price table) or by a ``cleanup_ctx`` (anything with I/O: stores, background services, the
   upstream session), which also closes it, in reverse order.
2. Storage: the SQL database (``SqlStore``) is always the source of truth. Embedded default
   (``storage.redis_url`` unset): SQLite at ``storage.effective_database_url`` with in-process
   counters (``MemoryCounterStore``), single process. With ``redis_url``: ``RedisCounterStore``.
   The schema is migrated at start (``await store.migrate()``, idempotent and safe to run from
   several processes at once), so ``spend-proxy serve`` works on an empty database; running
   ``spend-proxy migrate`` first is still the operator's choice for controlled upgrades.
3. Start order: stores (migrated) -> one ledger refresh, so counters are rebuilt from the ledger
   and spend survives a restart (a store that fails it is logged, not fatal: the refresher
   retries, and the spend check follows ``on_store_error``) -> recorder, refresher, directory
   cache -> upstream session.
   Shutdown runs it backwards, after aiohttp has stopped accepting and waited (bounded by
   ``server.shutdown_timeout_s``) for in-flight calls: the recorder drains within the same
   bound, spooling what the database does not take.
4. Injected parts (tests, benchmarks) are used as given and never migrated or closed here: the
   caller owns them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from limits import PriceTable
from limits.admin import AdminService
from limits.directory import CachedDirectory
from limits.enforcer import Enforcer, Mode, OnStoreError
from limits.errors import StoreError
from limits.ports import Clock, CounterStore, Directory, LedgerStore, Spool
from limits.pricing import Price, price_from_usd_per_mtok
from limits.recorder import LedgerRecorder
from limits.refresher import Refresher
from limits.spent_cache import SpentCache
from limits.store.clock import SystemClock
from limits.store.memory import MemoryCounterStore
from limits.store.prices import load_price_table
from limits.store.redis import RedisCounterStore
from limits.store.spool import FileSpool
from limits.store.sql import SqlStore
from proxy.admin import ADMIN, ADMIN_PREFIX, admin_app, live_spent
from proxy.auth import auth_middleware
from proxy.errors import error_middleware
from proxy.forwarding import Upstreams, create_session
from proxy.handlers import client_routes
from proxy.keys import (
    CLOCK,
    DIRECTORY,
    ENFORCER,
    PRICES,
    PROBES,
    REQUEST_IDS,
    ROUTER,
    SETTINGS,
    UPSTREAMS,
)
from proxy.metrics import METRICS, Metrics, metrics_endpoint
from proxy.middleware import access_middleware, on_response_prepare
from proxy.request_ids import RequestIds
from proxy.routing import Router
from proxy.service_metrics import Services
from proxy.settings import Settings

__all__ = ["RECORDER", "STORES", "Stores", "create_app", "price_overrides"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stores:
    """The storage ports the app runs on (owned or injected)."""

    counters: CounterStore
    directory: Directory
    ledger: LedgerStore


STORES: web.AppKey[Stores] = web.AppKey("stores")
RECORDER = web.AppKey("recorder", LedgerRecorder)


def price_overrides(settings: Settings) -> dict[str, Price]:
    """``[prices."model"]`` (USD per million tokens) as domain prices."""
    return {
        model: price_from_usd_per_mtok(
            p.input, p.output, p.cache_read, p.cache_write, p.max_output_tokens
        )
        for model, p in settings.prices.items()
    }


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    counters: CounterStore | None = None,
    directory: Directory | None = None,
    ledger: LedgerStore | None = None,
    prices: PriceTable | None = None,
    spool: Spool | None = None,
    worker: int | None = None,
) -> web.Application:
    """The proxy as an aiohttp application (see the module rules).

    ``directory`` and ``ledger`` replace the SQL store when both are given. ``prices`` skips
    reading litellm's map (tests share one table). ``worker`` (``serve`` with several workers)
    gives the process its own spool file, ``<spool_path>.<worker>``, and puts its metrics in
    prometheus-client's multiprocess mode (``proxy/metrics.py`` rule 5). Raises ``ConfigError``
    when the price map cannot be read, or when ``admin_token`` is empty on a non-loopback host.
    """
    app = web.Application(
        middlewares=[error_middleware, access_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[ROUTER] = Router(settings.upstreams)
    app[PRICES] = prices or load_price_table(price_overrides(settings))
    app[REQUEST_IDS] = RequestIds()
    app[METRICS] = Metrics(multiprocess=worker is not None)  # workers share metric files
    app.on_response_prepare.append(on_response_prepare)  # x-request-id on every answer
    app.add_subapp(ADMIN_PREFIX, admin_app(settings))  # before client routes: no catch-all wins
    app.add_routes(client_routes(settings.passthrough_paths))
    app.router.add_get("/metrics", metrics_endpoint)
    app.cleanup_ctx.append(_stores_ctx(counters, directory, ledger))
    app.cleanup_ctx.append(_services_ctx(spool, worker))
    app.cleanup_ctx.append(_upstreams_ctx)
    return app


CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def _own_counters(settings: Settings, clock: Clock) -> CounterStore:
    url = settings.storage.redis_url
    if url is None:
        return MemoryCounterStore(clock)
    return RedisCounterStore.from_url(url, clock=clock)


def _stores_ctx(
    counters: CounterStore | None, directory: Directory | None, ledger: LedgerStore | None
) -> CleanupCtx:
    async def stores(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        sql: SqlStore | None = None
        if directory is None or ledger is None:
            sql = await SqlStore.connect(settings.storage.effective_database_url)
            await sql.migrate()
        own_counters = None if counters is not None else _own_counters(settings, app[CLOCK])
        app[STORES] = Stores(
            counters=counters or own_counters or _unreachable(),
            directory=directory or sql or _unreachable(),
            ledger=ledger or sql or _unreachable(),
        )
        if sql is not None:  # the admin API writes through the SQL store; spend = live counters
            spent = live_spent(app[STORES].counters)
            app[ADMIN] = AdminService(sql, clock=app[CLOCK], spent=spent)
        yield
        if own_counters is not None:
            await own_counters.close()
        if sql is not None:
            await sql.close()

    return stores


def _unreachable() -> Any:
    raise AssertionError("unreachable: each store is injected or owned")


def _recorder(
    app: web.Application, spool: Spool | None, worker: int | None, spent: SpentCache
) -> LedgerRecorder:
    storage, stores = app[SETTINGS].storage, app[STORES]
    path = storage.spool_path if worker is None else f"{storage.spool_path}.{worker}"
    return LedgerRecorder(
        counters=stores.counters,
        ledger=stores.ledger,
        spool=spool or FileSpool(Path(path)),
        flush_interval_s=storage.ledger_flush_interval_s,
        batch_size=storage.ledger_batch_size,
        queue_max=storage.ledger_queue_max,
        clock=app[CLOCK],
        on_charged=spent.landed,  # the read cache stops adding charges the counters now have
    )


def _enforcer(
    app: web.Application, directory: Directory, sink: LedgerRecorder, spent: SpentCache
) -> Enforcer:
    enforcement = app[SETTINGS].enforcement
    return Enforcer(
        directory=directory,
        counters=app[STORES].counters,
        sink=sink,
        clock=app[CLOCK],
        mode=Mode(enforcement.mode),
        on_store_error=OnStoreError(enforcement.on_store_error),
        reservation_ttl_s=enforcement.reservation_ttl_s,
        spent_cache=spent,
    )


def _services_ctx(spool: Spool | None, worker: int | None) -> CleanupCtx:
    async def services(app: web.Application) -> AsyncIterator[None]:
        settings, clock, stores = app[SETTINGS], app[CLOCK], app[STORES]
        refresher = Refresher(
            ledger=stores.ledger,
            counters=stores.counters,
            clock=clock,
            interval_s=settings.storage.refresh_interval_s,
        )
        try:
            await refresher.refresh_once()  # counters <- ledger: spend survives a restart
        except StoreError as exc:  # a store down at start must not stop the proxy starting:
            # the spend check follows on_store_error, and the refresher's loop retries.
            log.warning("initial counter refresh failed (%s): retried in the background", exc)
        directory = CachedDirectory(
            stores.directory, clock=clock, poll_interval_s=settings.storage.cache_poll_interval_s
        )
        spent = SpentCache(stores.counters, max_age_s=settings.enforcement.spent_cache_s)
        recorder = _recorder(app, spool, worker, spent)
        app[RECORDER], app[DIRECTORY] = recorder, directory
        app[ENFORCER] = _enforcer(app, directory, recorder, spent)
        app[PROBES] = (("counters", stores.counters.ping), ("database", stores.directory.revision))
        recorder.start()
        refresher.start()
        directory.start()
        app[METRICS].watch(Services(recorder, directory, refresher))
        yield
        try:
            await app[METRICS].close()
            await directory.stop()
            await refresher.stop()
        finally:  # whatever else fails, the ledger is drained (SPEC §8 inv. 4)
            await recorder.stop(settings.server.shutdown_timeout_s)

    return services


async def _upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
    session = create_session()
    app[UPSTREAMS] = Upstreams(session, app[SETTINGS].upstreams)
    yield
    await session.close()
