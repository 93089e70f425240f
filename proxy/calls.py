"""One proxied call before and after the upstream: parse, route, price, admit, settle.

Steps (docs/design.md "One chat completion"; ``proxy/handlers.py`` runs them in order)
1. :func:`read_body`: at most ``max_body_bytes``: 413 when ``Content-Length`` says more, or when
   the bytes actually read pass it (chunked uploads have no length).
2. :func:`parse_call`: a JSON object (400 ``invalid_json``) with a non-empty string ``model``
   (400 ``missing_model``), routed to an upstream (404 ``model_not_found``) and priced (400
   ``model_not_priced``, unless ``unpriced_models = "allow"``: then it is charged 0, with a
   warning). The requested name is priced first, then the renamed upstream name.
3. :func:`admit`: ``Enforcer.admit`` (one counter round trip); ``Denied`` -> 429, a store error
   with ``on_store_error = "deny"`` -> 503.
4. :func:`settle`: usage -> cost (the model the upstream reports is priced first) ->
   ``Enforcer.settle``, which queues the charge off the request path.

Rules
- The body goes upstream byte for byte unless the proxy must change it (a configured rename, or
  ``stream_options.include_usage`` on a chat stream); then it is re-encoded with every field it
  does not know kept.
- Each call gets a unique ledger request id (``proxy/request_ids.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson
from aiohttp import web

from limits import Denied, Price, Usage, cost_micros
from limits.enforcer import Admission, Mode
from limits.errors import StoreError
from limits.ports import LedgerEntry, Principal
from proxy.errors import (
    InvalidJson,
    MissingModel,
    ModelNotFound,
    ModelNotPriced,
    RequestTooLarge,
    ServiceUnavailable,
    SpendLimitExceeded,
    rfc3339,
)
from proxy.estimate import reservation_usage
from proxy.keys import CLOCK, ENFORCER, PRICES, PRINCIPAL, REQUEST_IDS, ROUTER, SETTINGS
from proxy.routing import Route
from proxy.usage import USAGE_READERS, UsageReader

__all__ = [
    "ENDPOINTS",
    "Call",
    "Endpoint",
    "admit",
    "parse_call",
    "read_body",
    "settle",
    "spend_headers",
]

log = logging.getLogger(__name__)

_MODEL_NAME_MAX = 200  # the ledger's column width


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A proxied API path: how its usage is read, and whether its streams need
    ``stream_options.include_usage`` to report usage (OpenAI chat and legacy completions)."""

    path: str
    reader: UsageReader
    stream_usage_option: bool = False


ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType(
    {
        path: Endpoint(path, USAGE_READERS[path], stream_usage_option=option)
        for path, option in (("/v1/chat/completions", True), ("/v1/completions", True))
    }
    | {path: Endpoint(path, USAGE_READERS[path]) for path in ("/v1/embeddings", "/v1/responses")}
)


@dataclass(frozen=True, slots=True)
class Call:
    """A parsed, routed and priced client call."""

    endpoint: Endpoint
    principal: Principal
    model: str
    route: Route
    price: Price | None
    body: Mapping[str, Any]
    upstream_body: bytes
    stream: bool
    client_wants_usage: bool
    request_id: str
    started_at: datetime


async def read_body(request: web.Request, limit_bytes: int) -> bytes:
    """The request body, at most ``limit_bytes`` long (step 1). Raises 413."""
    length = request.content_length
    if length is not None and length > limit_bytes:
        raise RequestTooLarge(limit_bytes)
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit_bytes:
            raise RequestTooLarge(limit_bytes)
    return bytes(body)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise InvalidJson("The request body must be a JSON object.")
    return body


def _find_price(request: web.Request, model: str, route: Route) -> Price | None:
    prices = request.app[PRICES]
    price = prices.find(model)
    if price is None and route.upstream_model != model:
        price = prices.find(route.upstream_model)
    if price is None:
        if request.app[SETTINGS].unpriced_models != "allow":
            raise ModelNotPriced(model)
        log.warning("model %r has no price: charged 0 (unpriced_models = allow)", model[:100])
    return price


def _upstream_body(endpoint: Endpoint, raw: bytes, body: dict[str, Any], route: Route) -> bytes:
    changed = route.upstream_model != body["model"]
    if changed:
        body = {**body, "model": route.upstream_model}
    options = body.get("stream_options")
    extra = options if isinstance(options, dict) else {}
    if (
        endpoint.stream_usage_option
        and body.get("stream") is True
        and extra.get("include_usage") is not True
    ):
        body = {**body, "stream_options": {**extra, "include_usage": True}}
        changed = True
    return orjson.dumps(body) if changed else raw


def parse_call(request: web.Request, endpoint: Endpoint, raw: bytes) -> Call:
    """Step 2 of the module docstring. Raises 400 / 404 ``ProxyError``\\ s."""
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise MissingModel()
    route = request.app[ROUTER].route(model)
    if route is None:
        raise ModelNotFound(model)
    price = _find_price(request, model, route)
    options = body.get("stream_options")
    return Call(
        endpoint=endpoint,
        principal=request[PRINCIPAL],
        model=model,
        route=route,
        price=price,
        body=body,
        upstream_body=_upstream_body(endpoint, raw, body, route),
        stream=body.get("stream") is True,
        client_wants_usage=isinstance(options, dict) and options.get("include_usage") is True,
        request_id=request.app[REQUEST_IDS].new(request.headers.get("x-request-id")),
        started_at=request.app[CLOCK].now(),
    )


def spend_headers(admission: Admission, call: Call) -> dict[str, str]:
    """The ``x-spend-*`` headers of a proxied answer (SPEC §4)."""
    decision = admission.decision
    headers = {
        "x-spend-spent-micros": str(decision.spent_micros),
        "x-spend-resets-at": rfc3339(decision.period.end_at),
        "x-spend-request-id": call.request_id,
    }
    limit = decision.resolution.limit_micros
    if limit is not None:
        headers["x-spend-limit-micros"] = str(limit)
    return headers


async def admit(request: web.Request, call: Call) -> Admission:
    """Step 3 of the module docstring. Raises 429 ``SpendLimitExceeded`` or 503."""
    enforcer = request.app[ENFORCER]
    estimate_micros = 0
    if enforcer.mode is Mode.RESERVE and call.price is not None:
        cap = request.app[SETTINGS].enforcement.max_estimate_output_tokens
        usage = reservation_usage(call.body, call.price.max_output_tokens, cap)
        estimate_micros = cost_micros(usage, call.price)
    try:
        admission = await enforcer.admit(call.principal, estimate_micros)
    except StoreError as exc:
        raise ServiceUnavailable("The spend counters are unavailable; retry later.") from exc
    if admission.store_error:
        log.warning("spend check skipped for user %d: store error", call.principal.user_id)
    if isinstance(admission.decision, Denied):
        error = SpendLimitExceeded(admission.decision, request.app[CLOCK].now())
        error.headers.update(spend_headers(admission, call))
        raise error
    return admission


def settle(
    request: web.Request,
    call: Call,
    admission: Admission,
    usage: Usage,
    reported_model: str | None,
    *,
    estimated: bool = False,
) -> None:
    """Step 4 of the module docstring: price ``usage`` and queue the charge. Never raises."""
    price = call.price
    if reported_model:
        price = request.app[PRICES].find(call.model, reported_model) or price
    clock = request.app[CLOCK]
    entry = LedgerEntry(
        request_id=call.request_id,
        user_id=call.principal.user_id,
        model=call.model[:_MODEL_NAME_MAX],
        upstream=call.route.upstream,
        endpoint=call.endpoint.path,
        usage=usage,
        cost_micros=0 if price is None else cost_micros(usage, price),
        estimated=estimated,
        started_at=call.started_at,
        charged_at=clock.now(),
    )
    request.app[ENFORCER].settle(admission, entry)
