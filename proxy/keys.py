"""The typed ``web.AppKey`` / ``web.RequestKey`` constants under which the app keeps its parts.

(These are aiohttp state keys, not API keys: those are ``limits.keys``.)

Rules
1. ``proxy/app.py`` (the composition root) is the only writer: it stores each part once, while
   the app starts (``create_app`` or a ``cleanup_ctx``); handlers and middlewares only read.
2. The constants live here rather than in ``app.py`` because ``app.py`` imports the handlers and
   middlewares that read them: keeping them apart keeps the import graph one-way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from limits import PriceTable
from limits.enforcer import Enforcer
from limits.ports import Clock, Directory, Principal
from proxy.forwarding import Upstreams
from proxy.request_ids import RequestIds
from proxy.routing import Router
from proxy.settings import Settings

__all__ = [
    "CLOCK",
    "DIRECTORY",
    "ENFORCER",
    "PRICES",
    "PRINCIPAL",
    "PROBES",
    "REQUEST_IDS",
    "ROUTER",
    "SETTINGS",
    "UPSTREAMS",
    "Probe",
]

# A readiness check: (store name, coroutine function raising ``StoreError`` when unreachable).
Probe = tuple[str, Callable[[], Awaitable[object]]]

SETTINGS = web.AppKey("settings", Settings)
ROUTER = web.AppKey("router", Router)
PRICES = web.AppKey("prices", PriceTable)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
DIRECTORY: web.AppKey[Directory] = web.AppKey("directory")
ENFORCER = web.AppKey("enforcer", Enforcer)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
PROBES: web.AppKey[tuple[Probe, ...]] = web.AppKey("probes")
REQUEST_IDS = web.AppKey("request_ids", RequestIds)

PRINCIPAL = web.RequestKey("principal", Principal)
