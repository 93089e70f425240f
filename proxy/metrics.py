"""Prometheus metrics of one proxy process and ``GET /metrics`` (SPEC §4), via prometheus-client.

Families (besides the services' ones in ``proxy/service_metrics.py``)

    spend_proxy_requests_total{route,status,model}   every answered request
    spend_proxy_upstream_latency_seconds{upstream}   forwarding -> the upstream answer relayed
    spend_proxy_upstream_ttfb_seconds{upstream}      forwarding -> the client's answer starts
    spend_proxy_spend_micros_total{model}            micro-dollars charged (= the ledger's sum)
    spend_proxy_limit_denials_total{source}          spend-limit 429s, by the limit's source
    spend_proxy_fail_open_admissions_total           calls admitted unchecked (store down, allow)
    spend_proxy_reservations_in_flight               calls holding a reservation (mode reserve)
    spend_proxy_store_errors_total{store,operation}  request path: (database, key_lookup),
                                                     (counters, admit), (counters, usage),
                                                     (database, admin); see service_metrics.py

Rules
1. One registry per app (``Metrics.registry``), made by ``create_app`` and kept under
   ``METRICS``: no global registry, so apps (and tests) never share a number.
2. Hot path: :meth:`Metrics.observe` runs once per request, after the handler, from the facts on
   its ``Access`` record. Label children are bound once and cached per (route, status, model)
   and per upstream, so a request costs dict lookups and a few locked float adds.
3. Bounded labels: ``route`` is the matched route's pattern (never the raw path; ``unmatched``
   for 404s); ``model`` is set only once a call is routed and priced, and is one of at most
   ``MODEL_LABELS_MAX`` names per process (``other`` beyond); ``upstream`` names come from config.
4. Timing: upstream latency runs from admission (the call leaves for the upstream) to the end of
   the handler (the answer relayed, a stream to its end). Time to first byte runs from admission
   to the moment the client's answer is prepared: for a stream that is when the upstream's
   headers came back; a whole answer is read (to price it) before it is prepared, so there it is
   the whole upstream latency.
5. ``serve --workers N`` (N > 1): each worker runs prometheus-client's multiprocess mode
   (``PROMETHEUS_MULTIPROC_DIR``, set up by ``proxy/server.py``): metrics live in shared files,
   the registry serves a ``MultiProcessCollector`` that sums every worker's files, and gauges
   are ``livesum``. Whichever worker answers a scrape, the numbers are the whole server's.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.access import Access
from proxy.service_metrics import STORE_ERRORS, ServiceCollector, ServicePublisher, Services

__all__ = ["METRICS", "MODEL_LABELS_MAX", "Metrics", "metrics_endpoint"]

MODEL_LABELS_MAX = 256
# Seconds. LLM calls run from tens of milliseconds (embeddings) to minutes (long generations).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFB_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    """The app's metric families and their cached label children (see the module rules)."""

    def __init__(self, *, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        own = None if multiprocess else self.registry  # rule 5: multiprocess values are files
        self._define_call_families(own)
        self._define_limit_families(own)
        self.store_errors = Counter(*STORE_ERRORS, ("store", "operation"), registry=None)
        self._services = self._service_metrics()
        self._request_children: dict[tuple[str, int, str], Counter] = {}
        self._upstream_children: dict[str, tuple[Histogram, Histogram]] = {}
        self._spend_children: dict[str, Counter] = {}
        self._models: set[str] = set()

    def _define_call_families(self, own: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "spend_proxy_requests",
            "Requests answered, by route pattern, HTTP status and model.",
            ("route", "status", "model"),
            registry=own,
        )
        self.upstream_latency = Histogram(
            "spend_proxy_upstream_latency_seconds",
            "From forwarding a call to the end of the relayed upstream answer.",
            ("upstream",),
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.upstream_ttfb = Histogram(
            "spend_proxy_upstream_ttfb_seconds",
            "From forwarding a call to the first byte of the answer to the client.",
            ("upstream",),
            buckets=TTFB_BUCKETS,
            registry=own,
        )
        self.spend = Counter(
            "spend_proxy_spend_micros", "Micro-dollars charged, by model.", ("model",), registry=own
        )

    def _define_limit_families(self, own: CollectorRegistry | None) -> None:
        self.denials = Counter(
            "spend_proxy_limit_denials",
            "Calls refused by a spend limit, by the limit's source.",
            ("source",),
            registry=own,
        )
        self.fail_open = Counter(
            "spend_proxy_fail_open_admissions",
            "Calls admitted without a spend check because a store failed (on_store_error).",
            registry=own,
        )
        self.reservations = Gauge(
            "spend_proxy_reservations_in_flight",
            "Calls holding a spend reservation (enforcement mode reserve).",
            registry=own,
            multiprocess_mode="livesum",
        )

    def _service_metrics(self) -> ServiceCollector | ServicePublisher:
        if self.multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]  # untyped __init__
            return ServicePublisher(self.store_errors)
        collector = ServiceCollector(self.store_errors)
        self.registry.register(collector)
        return collector

    def watch(self, services: Services) -> None:
        """Export the background services' numbers from now on (called once they exist)."""
        if isinstance(self._services, ServicePublisher):
            self._services.start(services)
        else:
            self._services.services = services

    async def close(self) -> None:
        """Stop publishing (multiprocess mode); the last numbers are published first."""
        if isinstance(self._services, ServicePublisher):
            await self._services.stop()

    async def scrape(self) -> bytes:
        """The text exposition of every family."""
        if isinstance(self._services, ServicePublisher):
            self._services.publish()  # this worker's numbers are current; the others' ≤ 1 s old
            return await asyncio.to_thread(generate_latest, self.registry)  # reads the files
        return generate_latest(self.registry)

    def observe(self, route: str, status: int, access: Access, end: float) -> None:
        """Count one finished request (rule 2). ``end`` is ``time.perf_counter()`` seconds."""
        model = self._model_label(access.model)
        key = (route, status, model)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, str(status), model)
        child.inc()
        if access.forwarded_at is not None and access.upstream is not None:
            latency, ttfb = self._upstream(access.upstream)
            latency.observe(end - access.forwarded_at)
            ttfb.observe((access.answered_at or end) - access.forwarded_at)
        if access.cost_micros:
            spend = self._spend_children.get(model)
            if spend is None:
                spend = self._spend_children[model] = self.spend.labels(model)
            spend.inc(access.cost_micros)
        if access.denied_source is not None:
            self.denials.labels(access.denied_source).inc()
        if access.fail_open:
            self.fail_open.inc()
            self.store_errors.labels("counters", "admit").inc()
        if access.store_error is not None:
            self.store_errors.labels(*access.store_error).inc()
        if access.reserved:
            self.reservations.dec()

    def _model_label(self, model: str | None) -> str:
        if model is None:
            return ""
        if model in self._models:
            return model
        if len(self._models) < MODEL_LABELS_MAX:
            self._models.add(model)
            return model
        return "other"

    def _upstream(self, upstream: str) -> tuple[Histogram, Histogram]:
        children = self._upstream_children.get(upstream)
        if children is None:
            children = (
                self.upstream_latency.labels(upstream),
                self.upstream_ttfb.labels(upstream),
            )
            self._upstream_children[upstream] = children
        return children


METRICS = web.AppKey("metrics", Metrics)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format, no authentication (like ``/healthz``): keep the
    port off the public internet or block the path at the load balancer."""
    body = await request.app[METRICS].scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
