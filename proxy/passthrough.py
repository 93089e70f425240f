"""``passthrough_paths``: extra client-facing paths proxied like the built-in ones (SPEC §4).

A configured path (say ``/v1/moderations``) is authenticated, limit-checked, forwarded and
charged when the answer carries a usage block the proxy recognises (``proxy/usage.py``
``any_usage``); any HTTP method is forwarded as it came.

Rules
1. Never an open proxy. A path must be listed exactly: it is a route of its own, matched like
   the built-in ones (so ``/v1/moderations/x``, ``/v1//moderations`` or ``/v1/x/../moderations``
   stay 404), and the upstream is sent the configured path, never the client's spelling; the
   client's ``Host`` header and absolute-form request targets play no part in the upstream URL
   (``proxy/forwarding.py`` rule 2).
2. Allowed paths (checked at start-up, ``ConfigError`` otherwise): under ``/v1/`` (where keys
   are checked), segments of letters, digits, ``.``, ``_``, ``-`` and ``~`` only (no ``.`` or
   ``..`` segment, no empty segment, no percent-encoding or query), and not a path the proxy
   serves itself.
3. Upstream: a JSON body with a string ``model`` is routed like any call (among all upstreams,
   404 ``model_not_found``), priced before forwarding (400 ``model_not_priced``) and renamed;
   a body without one (no body, a form upload, JSON without ``model``) goes to the first
   upstream in config order, unpriced: its usage, if any, is priced by the model the answer
   reports, and charged 0 with a warning when that has no price.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from limits import ConfigError
from proxy.calls import ENDPOINTS, Call, find_price, new_call, route_model, upstream_body
from proxy.endpoints import Endpoint, passthrough_endpoint
from proxy.errors import ModelNotFound
from proxy.keys import ROUTER
from proxy.models import MODELS_PATH

__all__ = ["Parse", "parse_passthrough", "passthrough_endpoints"]

# Parses a client's call (``proxy/calls.py`` step 2). Raises ``ProxyError``s.
Parse = Callable[[web.Request, Endpoint, bytes], Call]

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_OWN_PATHS = frozenset({*ENDPOINTS, MODELS_PATH, "/v1/usage"})


def _check(path: str) -> None:
    """Raise ``ConfigError`` unless ``path`` is allowed (rule 2)."""
    segments = path.split("/")[1:]
    safe = (
        path.startswith("/v1/")
        and all(_SEGMENT.fullmatch(segment) for segment in segments)
        and not any(segment in {".", ".."} for segment in segments)
    )
    if not safe:
        raise ConfigError(
            f"passthrough_paths: {path!r} is not allowed: a path under /v1/ made of letters, "
            "digits, '.', '_', '-' and '~' (no '.' or '..' segment, no empty segment)"
        )
    if path in _OWN_PATHS or path.startswith(MODELS_PATH + "/"):
        raise ConfigError(f"passthrough_paths: {path!r} is served by the proxy itself")


def passthrough_endpoints(paths: Sequence[str]) -> list[Endpoint]:
    """One endpoint per configured path, duplicates dropped. Raises ``ConfigError`` (rule 2)."""
    for path in paths:
        _check(path)
    return [passthrough_endpoint(path) for path in dict.fromkeys(paths)]


def _json_object_or_empty(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is none (no body, a form upload, ...)."""
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def parse_passthrough(request: web.Request, endpoint: Endpoint, raw: bytes) -> Call:
    """Parse a passthrough call (rule 3). Raises 404 / 400 ``ProxyError``\\ s."""
    body = _json_object_or_empty(raw)
    model = body.get("model")
    if isinstance(model, str) and model:
        route = route_model(request, endpoint, model)
        price = find_price(request, model, route)
        sent = upstream_body(endpoint, raw, body, route)
        return new_call(request, endpoint, model, route, price, body, sent)
    default = request.app[ROUTER].default()
    if default is None:
        raise ModelNotFound("", "No upstream is configured.")
    return new_call(request, endpoint, "", default, None, body, raw)
