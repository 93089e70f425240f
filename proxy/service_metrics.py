"""Metrics of the background services, read from the plain attributes they keep.

The ledger recorder, the directory cache and the counter refresher count what they do in plain
attributes (``limits/recorder.py`` and the others know nothing of Prometheus). This module turns
those numbers into metric families:

    spend_proxy_ledger_queue_depth           gauge    rows in memory, not yet in the ledger or spool
    spend_proxy_ledger_spooled_rows          gauge    rows waiting in the local spool file
    spend_proxy_ledger_rows_written_total    counter  rows the ledger inserted
    spend_proxy_store_errors_total{store,operation}   counter, these rows plus the request
                                                      path's own (``proxy/metrics.py``):

    store              operation      source
    database           ledger_insert  LedgerRecorder.insert_failures
    counters           ledger_charge  LedgerRecorder.counter_failures (charge, mark committed)
    database           revision_poll  CachedDirectory.poll_failures
    database|counters  refresh        Refresher.failures (reads the ledger, writes the counters)

Rules
1. One process: :class:`ServiceCollector` is a custom collector: it reads the attributes when
   Prometheus scrapes. Nothing polls, nothing is copied.
2. Several worker processes (prometheus-client's multiprocess mode): a scrape is answered by one
   worker, which cannot read its siblings' memory; the only medium they share is the metric
   files. So :class:`ServicePublisher` copies each worker's numbers into multiprocess metrics
   (gauges summed over live processes, counters by their increase) every
   ``PUBLISH_INTERVAL_S`` and again just before its worker answers a scrape: a scrape sees the
   other workers' numbers at most that old.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from limits.directory import CachedDirectory
from limits.recorder import LedgerRecorder
from limits.refresher import Refresher
from limits.supervisor import Supervisor

__all__ = ["PUBLISH_INTERVAL_S", "ServiceCollector", "ServicePublisher", "Services"]

PUBLISH_INTERVAL_S = 1.0

_QUEUE = ("spend_proxy_ledger_queue_depth", "Ledger rows in memory, not yet written or spooled.")
_SPOOL = ("spend_proxy_ledger_spooled_rows", "Ledger rows waiting in the local spool file.")
_ROWS = ("spend_proxy_ledger_rows_written", "Ledger rows inserted into the database.")
STORE_ERRORS = ("spend_proxy_store_errors", "Store operations that failed, by store and operation.")

StoreOp = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Services:
    """The background services whose numbers are exported."""

    recorder: LedgerRecorder
    directory: CachedDirectory
    refresher: Refresher

    def failures(self) -> tuple[tuple[StoreOp, int], ...]:
        """``((store, operation), count)`` of the module docstring's table."""
        return (
            (("database", "ledger_insert"), self.recorder.insert_failures),
            (("counters", "ledger_charge"), self.recorder.counter_failures),
            (("database", "revision_poll"), self.directory.poll_failures),
            (("database|counters", "refresh"), self.refresher.failures),
        )


class ServiceCollector:
    """Rule 1: one process. Registered in the app's registry; ``services`` is set at start."""

    def __init__(self, request_errors: Counter) -> None:
        self._request_errors = request_errors  # not registered: its rows are merged here
        self.services: Services | None = None

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(*STORE_ERRORS, labels=("store", "operation"))
        for family in self._request_errors.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    errors.add_metric(
                        (sample.labels["store"], sample.labels["operation"]), sample.value
                    )
        services = self.services
        if services is not None:
            for labels, count in services.failures():
                errors.add_metric(labels, count)
            recorder = services.recorder
            yield GaugeMetricFamily(*_QUEUE, value=recorder.queue_depth)
            yield GaugeMetricFamily(*_SPOOL, value=recorder.spooled_rows)
            yield CounterMetricFamily(*_ROWS, value=recorder.rows_written)
        yield errors


class ServicePublisher:
    """Rule 2: several processes. ``start``/``stop`` run the copy loop; ``publish`` copies now."""

    def __init__(self, store_errors: Counter) -> None:
        self._store_errors = store_errors
        # Not registered anywhere: in multiprocess mode values live in the shared files.
        self._queue = Gauge(*_QUEUE, registry=None, multiprocess_mode="livesum")
        self._spool = Gauge(*_SPOOL, registry=None, multiprocess_mode="livesum")
        self._rows = Counter(*_ROWS, registry=None)
        self._published: dict[StoreOp, int] = {}
        self._rows_published = 0
        self._services: Services | None = None
        self._loop = Supervisor("metrics-publisher", self._run)

    def publish(self) -> None:
        """Copy the services' numbers into the shared metric files."""
        services = self._services
        if services is None:
            return
        recorder = services.recorder
        self._queue.set(recorder.queue_depth)
        self._spool.set(recorder.spooled_rows)
        if recorder.rows_written > self._rows_published:
            self._rows.inc(recorder.rows_written - self._rows_published)
            self._rows_published = recorder.rows_written
        for labels, count in services.failures():
            published = self._published.get(labels, 0)
            if count > published:
                self._store_errors.labels(*labels).inc(count - published)
                self._published[labels] = count

    def start(self, services: Services) -> None:
        self._services = services
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        self.publish()

    async def _run(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(PUBLISH_INTERVAL_S)
