"""``GET /v1/models`` and ``GET /v1/models/{model}``: the models this proxy routes (SPEC §4).

Rules
1. Two shapes on one path, chosen by the client: a request carrying ``anthropic-version`` (the
   Anthropic SDK and Claude Code always send it) gets Anthropic's shape
   (``{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
   "first_id", "last_id"}``, what the Anthropic SDK's ``models.list()`` parses) listing the
   models of the ``provider = "anthropic"`` upstreams; any other request gets OpenAI's
   (``{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}``) listing
   those of the ``provider = "openai"`` upstreams. Each client thus sees what it can call: the
   proxy does not translate formats (``proxy/routing.py`` rule 3).
2. The list holds the exact names of the upstreams' ``models`` lists; glob patterns cannot be
   listed, so a proxy routing ``gpt-*`` shows none of those. ``owned_by`` is the upstream's
   name; creation times are unknown to the proxy and given as the epoch.
3. One page: everything fits (``has_more`` is false), pagination parameters are ignored.
4. ``GET /v1/models/{model}`` answers for any model the client's family routes, glob matches
   included, else 404 ``model_not_found``.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from proxy.errors import ModelNotFound
from proxy.keys import ROUTER
from proxy.routing import Provider

__all__ = ["MODELS_PATH", "model_routes"]

MODELS_PATH = "/v1/models"
_EPOCH = "1970-01-01T00:00:00Z"


def _family(request: web.Request) -> Provider:
    return "anthropic" if "anthropic-version" in request.headers else "openai"


def _openai_model(model: str, upstream: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": upstream}


def _anthropic_model(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": model, "created_at": _EPOCH}


def _json(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models`` (rules 1-3)."""
    family = _family(request)
    listed = request.app[ROUTER].listed_models(family)
    if family == "openai":
        data = [_openai_model(model, upstream) for model, upstream in listed]
        return _json({"object": "list", "data": data})
    ids = [model for model, _ in listed]
    return _json(
        {
            "data": [_anthropic_model(model) for model in ids],
            "has_more": False,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    )


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}`` (rule 4). Raises 404 ``model_not_found``."""
    model = request.match_info["model"]
    family = _family(request)
    route = request.app[ROUTER].route(model, family)
    if route is None:
        raise ModelNotFound(model)
    if family == "openai":
        return _json(_openai_model(model, route.upstream))
    return _json(_anthropic_model(model))


def model_routes() -> list[web.RouteDef]:
    """The two routes of this module."""
    return [web.get(MODELS_PATH, list_models), web.get(MODELS_PATH + "/{model:.+}", get_model)]
