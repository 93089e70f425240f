"""One proxied call before and after the upstream: parse, route, price, admit, settle.

Steps (docs/design.md "One chat completion"; ``proxy/handlers.py`` runs them in order)
1. :func:`read_body`: at most ``max_body_bytes``: 413 when ``Content-Length`` says more, or when
   the bytes actually read pass it (chunked uploads have no length).
2. :func:`parse_call`: a JSON object (400 ``invalid_json``) with a non-empty string ``model``
   (400 ``missing_model``), routed to an upstream of the endpoint's family (404
   ``model_not_found``; when only the other family serves the model, the message names the
   path to call instead: no format translation) and priced (400 ``model_not_priced``, unless
   ``unpriced_models = "allow"``: then it is charged 0, with a warning; uncharged endpoints
   skip pricing). The requested name is priced first, then the renamed upstream name.
   (``proxy/passthrough.py`` parses passthrough calls with the same parts, model optional.)
3. :func:`admit`: ``Enforcer.admit`` (one counter round trip); ``Denied`` -> 429, a store error
   with ``on_store_error = "deny"`` -> 503.
4. :func:`settle`: usage -> cost (the model the upstream reports is priced first) ->
   ``Enforcer.settle``, which queues the charge off the request path. The ledger row names the
   client's model (a passthrough call without one: the model the answer reports).

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
from typing import Any

import orjson
from aiohttp import web

from limits import Denied, Price, Usage, cost_micros
from limits.enforcer import Admission, Mode
from limits.errors import StoreError
from limits.ports import LedgerEntry, Principal
from proxy.access import access_of
from proxy.endpoints import ENDPOINTS, Endpoint
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
from proxy.routing import Route, Router

__all__ = [
    "ENDPOINTS",
    "Call",
    "Endpoint",
    "admit",
    "find_price",
    "new_call",
    "parse_call",
    "read_body",
    "route_model",
    "settle",
    "spend_headers",
    "upstream_body",
]

log = logging.getLogger(__name__)

_MODEL_NAME_MAX = 200  # the ledger's column width


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


def find_price(request: web.Request, model: str, route: Route) -> Price | None:
    """The price of ``model`` (or of its renamed upstream name). Raises 400
    ``model_not_priced`` unless ``unpriced_models = "allow"`` (then None)."""
    prices = request.app[PRICES]
    price = prices.find(model)
    if price is None and route.upstream_model != model:
        price = prices.find(route.upstream_model)
    if price is None:
        if request.app[SETTINGS].unpriced_models != "allow":
            raise ModelNotPriced(model)
        log.warning("model %r has no price: charged 0 (unpriced_models = allow)", model[:100])
    return price


def upstream_body(endpoint: Endpoint, raw: bytes, body: dict[str, Any], route: Route) -> bytes:
    """The body to send: ``raw`` itself unless a rename or ``include_usage`` changes it."""
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


def _other_family(router: Router, endpoint: Endpoint, model: str) -> ModelNotFound:
    """404 for a model no upstream of the endpoint's family serves; names the path that
    would reach it when an upstream of the other family does (step 2)."""
    other = router.route(model) if endpoint.provider is not None else None
    if other is None:
        return ModelNotFound(model)
    if other.settings.provider == "anthropic":
        where = "POST /v1/messages (the Anthropic Messages API)"
    else:
        where = "the OpenAI-format paths (/v1/chat/completions, /v1/responses, ...)"
    message = (
        f"The model {model!r} is served by the upstream {other.upstream!r} "
        f"(provider {other.settings.provider!r}), which {endpoint.path} does not reach: the "
        f"proxy does not translate between API formats. Call it on {where}."
    )
    return ModelNotFound(model, message)


def route_model(request: web.Request, endpoint: Endpoint, model: str) -> Route:
    """The upstream for ``model`` among the endpoint's family. Raises 404 ``model_not_found``."""
    router = request.app[ROUTER]
    route = router.route(model, endpoint.provider)
    if route is None:
        raise _other_family(router, endpoint, model)
    return route


def parse_call(request: web.Request, endpoint: Endpoint, raw: bytes) -> Call:
    """Step 2 of the module docstring. Raises 400 / 404 ``ProxyError``\\ s."""
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise MissingModel()
    route = route_model(request, endpoint, model)
    price = find_price(request, model, route) if endpoint.charged else None
    sent = upstream_body(endpoint, raw, body, route)
    return new_call(request, endpoint, model, route, price, body, sent)


def new_call(
    request: web.Request,
    endpoint: Endpoint,
    model: str,
    route: Route,
    price: Price | None,
    body: Mapping[str, Any],
    sent: bytes,
) -> Call:
    """A :class:`Call` with a fresh request id and start time; ``sent`` is the upstream body."""
    options = body.get("stream_options")
    call = Call(
        endpoint=endpoint,
        principal=request[PRINCIPAL],
        model=model,
        route=route,
        price=price,
        body=body,
        upstream_body=sent,
        stream=body.get("stream") is True,
        client_wants_usage=isinstance(options, dict) and options.get("include_usage") is True,
        request_id=request.app[REQUEST_IDS].new(request.headers.get("x-request-id")),
        started_at=request.app[CLOCK].now(),
    )
    access_of(request).called(model, route.upstream, call.request_id)
    return call


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
    access_of(request).admitted(admission)
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
    model = call.model or reported_model or ""  # a passthrough call may name no model
    if price is None and not call.model:
        log.warning("passthrough call to %s: no price for %r, charged 0", call.endpoint.path, model)
    clock = request.app[CLOCK]
    entry = LedgerEntry(
        request_id=call.request_id,
        user_id=call.principal.user_id,
        model=model[:_MODEL_NAME_MAX],
        upstream=call.route.upstream,
        endpoint=call.endpoint.path,
        usage=usage,
        cost_micros=0 if price is None else cost_micros(usage, price),
        estimated=estimated,
        started_at=call.started_at,
        charged_at=clock.now(),
    )
    access_of(request).settled(entry)
    request.app[ENFORCER].settle(admission, entry)
