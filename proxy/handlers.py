"""Client-facing route handlers: the proxied LLM calls, ``/v1/usage``, ``/v1/models``, probes.

A proxied call runs the steps of ``proxy/calls.py`` (read, parse, admit), forwards the call
(``proxy/forwarding.py``), relays the answer, and settles it.

Rules
1. Nothing is charged unless the upstream reported usage; an upstream error answer (any status)
   without usage is relayed unchanged and its admission released, never charged.
2. A stream (an upstream ``text/event-stream`` answer) is relayed by ``proxy/streaming.py``;
   it is settled in a ``finally`` so that a disconnect, an upstream cut or a cancellation still
   charges: the usage block if one went by, else an estimate marked ``estimated``.
3. Every proxied answer carries the ``x-spend-*`` headers (``calls.spend_headers``).
4. ``GET /v1/models`` lists the exact model names of the upstreams' ``models`` lists; glob
   patterns cannot be listed, so a proxy routing ``gpt-*`` shows none of those.
5. ``GET /readyz`` pings every store (2 s each, concurrently): 200, or 503 naming the failed ones.
"""

from __future__ import annotations

import asyncio
import logging
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
from proxy.errors import ServiceUnavailable
from proxy.estimate import fallback_usage, request_text_chars
from proxy.forwarding import Upstreams, client_headers
from proxy.keys import ENFORCER, PRINCIPAL, PROBES, ROUTER, SETTINGS, UPSTREAMS, Probe
from proxy.streaming import StreamEnd, UsageTap, relay_stream

__all__ = ["client_routes"]

log = logging.getLogger(__name__)

_READY_TIMEOUT_S = 2.0


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _call_handler(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await read_body(request, request.app[SETTINGS].max_body_bytes)
        call = parse_call(request, endpoint, raw)
        admission = await admit(request, call)
        try:
            upstream = await request.app[UPSTREAMS].send(call.route, request, call.upstream_body)
        except BaseException:
            await request.app[ENFORCER].release(admission)
            raise
        headers = client_headers(upstream.headers)
        headers.update(spend_headers(admission, call))
        if upstream.content_type == "text/event-stream":
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
    strip = call.endpoint.stream_usage_option and call.stream and not call.client_wants_usage
    tap = UsageTap(call.endpoint.reader, strip_usage_chunk=strip)
    end = StreamEnd.CLIENT_GONE
    try:
        response, end = await relay_stream(request, upstream, headers, tap)
    finally:
        if tap.usage is not None:
            settle(request, call, admission, tap.usage, tap.reported_model)
        else:
            usage = fallback_usage(request_text_chars(call.body), tap.meter.chars())
            settle(request, call, admission, usage, None, estimated=True)
            log.info(
                "stream %s ended without usage (%s): estimate charged", call.request_id, end.value
            )
    return response


async def usage_status(request: web.Request) -> web.Response:
    """``GET /v1/usage``: the caller's own spend status (same shape as the admin API's)."""
    try:
        status = await request.app[ENFORCER].status(request[PRINCIPAL])
    except StoreError as exc:
        raise ServiceUnavailable() from exc
    return _json(status.to_dict())


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models`` (rule 4), in OpenAI's list shape."""
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": upstream}
        for model, upstream in request.app[ROUTER].listed_models()
    ]
    return _json({"object": "list", "data": data})


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the process is alive and serving."""
    return _json({"status": "ok"})


async def _failed(probe: Probe) -> str | None:
    name, check = probe
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            await check()
    except (StoreError, TimeoutError):
        return name
    return None


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz`` (rule 5)."""
    results = await asyncio.gather(*(_failed(probe) for probe in request.app[PROBES]))
    failed = [name for name in results if name is not None]
    if failed:
        return _json({"status": "unavailable", "failed": failed}, status=503)
    return _json({"status": "ready"})


def client_routes() -> list[web.RouteDef]:
    """The client-facing routes (the admin API adds its own)."""
    routes = [web.post(path, _call_handler(endpoint)) for path, endpoint in ENDPOINTS.items()]
    return [
        *routes,
        web.get("/v1/usage", usage_status),
        web.get("/v1/models", list_models),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
    ]
