"""Client-facing route handlers: the proxied LLM calls, ``/v1/usage``, probes (``/v1/models``
is ``proxy/models.py``).

A proxied call runs the steps of ``proxy/calls.py`` (read, parse, admit), forwards the call
(``proxy/forwarding.py``), relays the answer, and settles it. The same pipeline serves every
path of ``proxy/endpoints.py`` and the configured ``passthrough_paths``
(``proxy/passthrough.py``, which only parses differently).

Rules
1. Nothing is charged unless the upstream reported usage; an upstream error answer (any status)
   without usage is relayed unchanged and its admission released, never charged.
2. A stream (an upstream 2xx ``text/event-stream`` answer) is relayed by ``proxy/streaming.py``;
   it is settled in a ``finally`` so that a disconnect, an upstream cut or a cancellation still
   charges: the complete usage if it went by; else an estimate marked ``estimated`` (from the
   request and the relayed text, keeping any partial usage the stream reported). An
   uncharged endpoint (``count_tokens``) only releases its admission.
3. Every proxied answer carries the ``x-spend-*`` headers (``calls.spend_headers``).
4. ``GET /readyz`` pings every store (2 s each, concurrently) and names each one's state:
   ``{"status": "ok", "checks": {"counters": "ok", "database": "ok"}}``; 503 with
   ``"status": "unavailable"`` when any store is ``"unavailable"``.
5. The Responses API's WebSocket transport (``GET /v1/responses`` with ``Upgrade: websocket``,
   which Codex CLI tries first) is not offered: 426 ``websocket_not_supported`` makes clients
   fall back to HTTP at once (a 405 makes Codex retry five times first).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from limits import Usage
from limits.enforcer import Admission
from limits.errors import StoreError
from proxy.calls import (
    ENDPOINTS,
    Call,
    Endpoint,
    admit,
    parse_call,
    read_body,
    settle,
    spend_headers,
)
from proxy.errors import ProxyError, ServiceUnavailable
from proxy.estimate import fallback_usage, request_text_chars
from proxy.forwarding import Upstreams, client_headers
from proxy.keys import ENFORCER, PRINCIPAL, PROBES, SETTINGS, UPSTREAMS, Probe
from proxy.models import model_routes
from proxy.passthrough import Parse, parse_passthrough, passthrough_endpoints
from proxy.streaming import StreamEnd, UsageTap, relay_stream

__all__ = ["client_routes"]

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = 2.0


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _call_handler(endpoint: Endpoint, parse: Parse = parse_call) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await read_body(request, request.app[SETTINGS].max_body_bytes)
        call = parse(request, endpoint, raw)
        admission = await admit(request, call)
        try:
            upstream = await request.app[UPSTREAMS].send(
                call.route, request, endpoint.path, call.upstream_body
            )
        except BaseException:
            await request.app[ENFORCER].release(admission)
            raise
        headers = client_headers(upstream.headers)
        headers.update(spend_headers(admission, call))
        if upstream.content_type == "text/event-stream" and upstream.status < 300:
            return await _relay(request, call, admission, upstream, headers)
        return await _respond(request, call, admission, upstream, headers)

    return handle


def _usage_of(call: Call, body: bytes) -> tuple[Usage | None, str | None]:
    """The usage and reported model in a whole (non-streamed) answer, if it has any."""
    if b'"usage"' not in body:
        return None, None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    model = payload.get("model")
    return call.endpoint.reader(payload), model if isinstance(model, str) else None


async def _respond(
    request: web.Request,
    call: Call,
    admission: Admission,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
) -> web.Response:
    """Relay a whole answer (rule 1) and settle it."""
    try:
        body = await Upstreams.read(call.route, upstream)
    except BaseException:
        await request.app[ENFORCER].release(admission)
        raise
    finally:
        upstream.release()
    usage, reported_model = _usage_of(call, body)
    if usage is None:
        await request.app[ENFORCER].release(admission)
    else:
        settle(request, call, admission, usage, reported_model)
    return web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)


async def _relay(
    request: web.Request,
    call: Call,
    admission: Admission,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
) -> web.StreamResponse:
    """Relay a stream (rule 2) and settle it, whatever happens."""
    endpoint = call.endpoint
    strip = endpoint.stream_usage_option and call.stream and not call.client_wants_usage
    tap = UsageTap(endpoint.stream_reader, strip_usage_chunk=strip, text=endpoint.event_chars)
    end = StreamEnd.CLIENT_GONE
    try:
        response, end = await relay_stream(request, upstream, headers, tap)
    finally:
        await _settle_stream(request, call, admission, tap, end)
    return response


async def _settle_stream(
    request: web.Request, call: Call, admission: Admission, tap: UsageTap, end: StreamEnd
) -> None:
    """Charge what a finished or broken stream used (rule 2). Never raises."""
    reading = tap.reading
    if reading is not None and reading.final:
        settle(request, call, admission, reading.usage, tap.reported_model)
        return
    if not call.endpoint.charged:
        await request.app[ENFORCER].release(admission)
        return
    seen = None if reading is None else reading.usage
    usage = fallback_usage(request_text_chars(call.body), tap.meter.chars(), seen)
    settle(request, call, admission, usage, tap.reported_model, estimated=True)
    log.info("stream %s ended without usage (%s): estimate charged", call.request_id, end.value)


async def usage_status(request: web.Request) -> web.Response:
    """``GET /v1/usage``: the caller's own spend status (same shape as the admin API's)."""
    try:
        status = await request.app[ENFORCER].status(request[PRINCIPAL])
    except StoreError as exc:
        raise ServiceUnavailable() from exc
    return _json(status.to_dict())


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the process is alive and serving."""
    return _json({"status": "ok"})


async def _check(probe: Probe) -> tuple[str, str]:
    name, check = probe
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            await check()
    except (StoreError, TimeoutError):
        return name, "unavailable"
    return name, "ok"


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz`` (rule 4)."""
    checks = dict(await asyncio.gather(*(_check(probe) for probe in request.app[PROBES])))
    ready = all(state == "ok" for state in checks.values())
    payload = {"status": "ok" if ready else "unavailable", "checks": checks}
    return _json(payload, status=200 if ready else 503)


async def responses_websocket(request: web.Request) -> web.Response:
    """``GET /v1/responses`` (rule 5). Raises 426, or 405 when it is no WebSocket upgrade."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise web.HTTPMethodNotAllowed("GET", ["POST"])
    message = "This proxy serves the Responses API over HTTP only: POST /v1/responses."
    upgrade = {"Upgrade": "HTTP/1.1"}  # RFC 9110 §15.5.22: name the protocol to use
    raise ProxyError(
        426, "invalid_request_error", "websocket_not_supported", message, None, upgrade
    )


def client_routes(passthrough_paths: Sequence[str] = ()) -> list[web.RouteDef]:
    """The client-facing routes (the admin API adds its own). Raises ``ConfigError`` for a
    passthrough path that is not allowed (``proxy/passthrough.py``)."""
    routes = [web.post(path, _call_handler(endpoint)) for path, endpoint in ENDPOINTS.items()]
    passthrough = [
        web.route("*", endpoint.path, _call_handler(endpoint, parse_passthrough))
        for endpoint in passthrough_endpoints(passthrough_paths)
    ]
    return [
        *routes,
        *model_routes(),
        web.get("/v1/responses", responses_websocket),
        web.get("/v1/usage", usage_status),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        *passthrough,
    ]
