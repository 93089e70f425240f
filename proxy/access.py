"""The facts of one client request, gathered while it runs, for the access log and the metrics.

The access middleware (``proxy/middleware.py``) puts one :class:`Access` on every request under
``ACCESS``. The steps of a proxied call (``proxy/calls.py``) note what they learn on it through
three hooks, in this order: :meth:`Access.called` (parsed, routed, priced),
:meth:`Access.admitted` (the spend check's answer; the call goes upstream right after) and
:meth:`Access.settled` (the charge). When the handler is done the middleware turns the record
into one access log line and the request's metrics, in one place.

Rules
1. Hooks only store values: no I/O, no logging, nothing that can raise; they cost a few
   attribute writes on the hot path. The one exception is ``on_reserve``, which the middleware
   points at the reservations-in-flight gauge: that gauge must rise when the reservation is
   taken, not when the request ends.
2. Times are ``time.perf_counter()`` seconds: monotonic, used for durations only.
3. :func:`access_of` never fails: a request that did not pass the middleware (a unit test that
   calls a step directly) gets a throwaway record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from limits import Denied, Usage
from limits.enforcer import Admission
from limits.ports import LedgerEntry

__all__ = ["ACCESS", "Access", "access_of"]


@dataclass(slots=True)
class Access:
    """What is known about one request so far (see the module docstring)."""

    request_id: str = ""  # the x-request-id this request answers with
    started_at: float = 0.0
    model: str | None = None  # the requested model, once routed and priced
    upstream: str | None = None
    ledger_id: str | None = None  # the ledger row's request id (x-spend-request-id)
    forwarded_at: float | None = None  # admitted: the call goes upstream now
    answered_at: float | None = None  # the response to the client was prepared
    upstream_request_id: str | None = None  # the upstream's own x-request-id, if it sent one
    denied_source: str | None = None  # a spend-limit 429: where the limit came from
    fail_open: bool = False  # admitted unchecked because a store failed (on_store_error)
    reserved: bool = False  # holds a reservation (mode "reserve")
    usage: Usage | None = None
    cost_micros: int | None = None
    estimated: bool = False
    store_error: tuple[str, str] | None = None  # (store, operation) of a 503, set by middleware
    on_reserve: Callable[[], None] | None = None  # rule 1

    def called(self, model: str, upstream: str, ledger_id: str) -> None:
        """The call is parsed, routed to ``upstream`` and priced."""
        self.model, self.upstream, self.ledger_id = model, upstream, ledger_id

    def admitted(self, admission: Admission) -> None:
        """The spend check answered: denied (a 429 follows) or allowed (forwarded now)."""
        decision = admission.decision
        if isinstance(decision, Denied):
            source = decision.resolution.source
            self.denied_source = "none" if source is None else source.value
            return
        self.fail_open = admission.store_error
        if admission.reservation_id is not None:
            self.reserved = True
            if self.on_reserve is not None:
                self.on_reserve()
        self.forwarded_at = time.perf_counter()

    def settled(self, entry: LedgerEntry) -> None:
        """The call was charged: ``entry`` is its ledger row (whose model names a passthrough
        call that named none: the model its answer reported)."""
        self.usage, self.cost_micros, self.estimated = (
            entry.usage,
            entry.cost_micros,
            entry.estimated,
        )
        if not self.model:
            self.model = entry.model


ACCESS = web.RequestKey("access", Access)


def access_of(request: web.Request) -> Access:
    """The request's record (rule 3)."""
    return request.get(ACCESS) or Access()
