"""The access middleware: request ids, one access log line and the metrics of every request.

It sits just inside the error middleware (``proxy/app.py``), so it sees a handler's exception
with its cause, and around authentication, so it times the whole request.

Rules
1. Request id: a client's ``x-request-id`` is kept when it is sane (1 to 128 printable ASCII
   characters), else the proxy makes one. Every response carries ``x-request-id``
   (:func:`on_response_prepare`), except that an upstream's own ``x-request-id`` (OpenAI's
   ``req_...``, which its support asks for) is relayed unchanged; the access line then has both.
   The ledger's id for a call is ``x-spend-request-id`` (``proxy/request_ids.py``).
2. One access line per request on logger ``proxy.access`` (INFO; the probes ``/healthz``,
   ``/readyz`` and ``/metrics`` at DEBUG): request_id, method, path, route, status, user, model,
   upstream, ledger_request_id, upstream_request_id, tokens, cost_micros, estimated,
   denied_source, fail_open, upstream_ms, total_ms. Never a header, a body or a key (and the log
   filter scrubs keys anyway: ``proxy/logs.py``).
3. Status of a request that raised: a ``ProxyError``'s or ``HTTPException``'s own, 499 for a
   cancelled handler (the client went away), else 500 (what the error middleware answers).
4. A 503 caused by a ``StoreError`` is counted as a store error, named by how far the request
   got: no principal yet -> (database, key_lookup); a parsed call -> (counters, admit); the admin
   API -> (database, admin); otherwise (counters, usage).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from limits.errors import StoreError
from proxy.access import ACCESS, Access
from proxy.errors import ProxyError
from proxy.keys import PRINCIPAL, REQUEST_IDS
from proxy.metrics import METRICS

__all__ = ["access_middleware", "on_response_prepare"]

access_log = logging.getLogger("proxy.access")

_SANE_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_PATH_MAX = 200
CLIENT_GONE = 499  # nginx's status for a client that closed the connection first


def request_id(request: web.Request) -> str:
    """The client's ``x-request-id`` if sane, else a fresh one (rule 1)."""
    supplied = request.headers.get("x-request-id")
    if supplied and _SANE_REQUEST_ID.fullmatch(supplied):
        return supplied
    return request.app[REQUEST_IDS].new(None)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


def _store_error(request: web.Request, access: Access) -> tuple[str, str]:
    """Rule 4."""
    if request.path.startswith("/v1/") and PRINCIPAL not in request:
        return ("database", "key_lookup")
    if access.model is not None:
        return ("counters", "admit")
    if request.path.startswith("/admin/"):
        return ("database", "admin")
    return ("counters", "usage")


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rules 1 to 4, around the rest of the chain."""
    metrics = request.app[METRICS]
    access = Access(request_id(request), time.perf_counter(), on_reserve=metrics.reservations.inc)
    request[ACCESS] = access
    status = 500
    try:
        response = await handler(request)
        status = response.status
        relayed = response.headers.get("x-request-id")
        if relayed is not None and relayed != access.request_id:
            access.upstream_request_id = relayed
        return response
    except ProxyError as exc:
        status = exc.status
        if exc.status == 503 and isinstance(exc.__cause__, StoreError):
            access.store_error = _store_error(request, access)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        end = time.perf_counter()
        route = _route(request)
        metrics.observe(route, status, access, end)
        level = logging.DEBUG if route in _PROBES else logging.INFO
        if access_log.isEnabledFor(level):
            fields = _access_fields(request, access, route, status, end)
            access_log.log(level, "%s %s %d", request.method, fields["path"], status, extra=fields)


def _access_fields(
    request: web.Request, access: Access, route: str, status: int, end: float
) -> dict[str, Any]:
    principal = request.get(PRINCIPAL)
    usage = access.usage
    forwarded_at = access.forwarded_at
    return {
        "request_id": access.request_id,
        "method": request.method,
        "path": request.path[:_PATH_MAX],
        "route": route,
        "status": status,
        "user": None if principal is None else principal.user_name,
        "model": access.model,
        "upstream": access.upstream,
        "ledger_request_id": access.ledger_id,
        "upstream_request_id": access.upstream_request_id,
        "input_tokens": None if usage is None else usage.input_tokens,
        "output_tokens": None if usage is None else usage.output_tokens,
        "cache_read_tokens": None if usage is None else usage.cache_read_tokens,
        "cache_write_tokens": None if usage is None else usage.cache_write_tokens,
        "cost_micros": access.cost_micros,
        "estimated": access.estimated,
        "denied_source": access.denied_source,
        "fail_open": access.fail_open,
        "upstream_ms": None if forwarded_at is None else round((end - forwarded_at) * 1000, 1),
        "total_ms": round((end - access.started_at) * 1000, 1),
    }


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` signal: stamp ``x-request-id`` and note when the answer began."""
    access = request.get(ACCESS)
    if access is None:
        return
    if access.answered_at is None:
        access.answered_at = time.perf_counter()
    response.headers.setdefault("x-request-id", access.request_id)
