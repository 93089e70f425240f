"""The admin HTTP API under ``/admin/v1`` as an aiohttp sub-application (SPEC §5).

    proxy/admin.py         admin_app(settings): the sub-app; live_spent(counters)
    proxy/admin_auth.py    the admin token middleware and the start-up check
    proxy/admin_routes.py  the endpoints and the route table (one row per operation)
    proxy/admin_http.py    Operation, request parsing, domain error -> HTTP error
    proxy/admin_models.py  pydantic models of bodies, queries and answers
    proxy/openapi.py       the OpenAPI 3.1 document, generated from the route table

Rules
1. No app object at module level (aiohttp ``docs/faq.rst``): ``proxy/app.py`` calls
   :func:`admin_app` and mounts it with ``add_subapp(ADMIN_PREFIX, ...)``, and stores the
   ``AdminService`` under ``ADMIN`` once the SQL store is open. The service is the one the CLI
   uses (``limits.admin``); only its ``spent`` differs: the live counters here
   (:func:`live_spent`, the same numbers ``/v1/usage`` and the 429s use), the ledger in the CLI.
2. The parent app's error middleware (outermost) renders every admin error in OpenAI's shape;
   the sub-app's own middleware checks the admin token (``proxy/admin_auth.py``).
3. Admin writes bump the database revision (``limits/store``); every proxy's
   ``CachedDirectory`` polls it, so a revoked key or a new limit takes effect on every replica
   within ``storage.cache_poll_interval_s`` (1 s) plus one query.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import orjson
from aiohttp import web

from limits.admin import SpentFn
from limits.periods import Period
from limits.ports import CounterStore
from proxy.admin_auth import admin_token_middleware, check_admin_token
from proxy.admin_http import ADMIN, ADMIN_PREFIX, aiohttp_handler
from proxy.admin_routes import operations
from proxy.openapi import OPENAPI_PATH, document
from proxy.settings import Settings

__all__ = ["ADMIN", "ADMIN_PREFIX", "admin_app", "live_spent", "openapi_document"]

_DOCUMENT = web.AppKey("openapi_document", bytes)


def live_spent(counters: CounterStore) -> SpentFn:
    """``spent(user_id, period)`` read from the live counters (rule 1)."""

    async def spent(user_id: int, period: Period) -> int:
        spent_micros, _reserved_micros = await counters.read(user_id, period)
        return spent_micros

    return spent


def _version() -> str:
    try:
        return metadata.version("spend-proxy")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def openapi_document() -> dict[str, Any]:
    """The admin API's OpenAPI document (``GET /admin/v1/openapi.json``)."""
    return document(operations(), _version())


async def _serve_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_DOCUMENT], content_type="application/json")


def admin_app(settings: Settings) -> web.Application:
    """The admin sub-app, to mount at ``ADMIN_PREFIX``. Raises ``ConfigError`` when the admin
    token is empty on a non-loopback host (``proxy/admin_auth.py`` rule 3)."""
    check_admin_token(settings)
    app = web.Application(middlewares=[admin_token_middleware])
    app[_DOCUMENT] = orjson.dumps(openapi_document())
    app.router.add_get(OPENAPI_PATH, _serve_document, name="openapi", allow_head=False)
    for op in operations():
        app.router.add_route(op.method, op.path, aiohttp_handler(op), name=op.operation_id)
    return app
