"""The admin token: the one credential of the admin API (SPEC §5).

Rules
1. Every admin route needs ``Authorization: Bearer <admin token>`` except
   ``GET /admin/v1/openapi.json``. The token is compared in constant time
   (``hmac.compare_digest``); anything else, including a user's API key (``sk-sp-...``) or the
   token sent as ``x-api-key``, is 401 ``invalid_admin_token``. User keys are never looked up
   here: the admin API has no principals, only the token.
2. An empty ``admin_token`` disables the admin API: every route answers 503
   ``admin_api_disabled`` (the CLI still works: it needs no server).
3. A proxy reachable from other machines must not run with the admin API disabled by accident:
   :func:`check_admin_token` refuses to build the app (``ConfigError``, printed on one line by
   the CLI) when the token is empty and ``server.host`` is not a loopback address.
4. The token is never logged, nor what a client presented.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler

from limits.errors import ConfigError
from proxy.admin_http import ADMIN_PREFIX
from proxy.errors import AdminApiDisabled, InvalidAdminToken
from proxy.keys import SETTINGS
from proxy.openapi import OPENAPI_PATH
from proxy.settings import Settings

__all__ = ["admin_token_middleware", "check_admin_token", "is_loopback"]

_PUBLIC_PATH = ADMIN_PREFIX + OPENAPI_PATH


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``server.host``) only accepts connections from this machine."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name, or "" (every interface)
        return False


def check_admin_token(settings: Settings) -> None:
    """Raise ``ConfigError`` for an empty admin token on a non-loopback host (rule 3)."""
    host = settings.server.host
    if not settings.admin_token.get_secret_value() and not is_loopback(host):
        raise ConfigError(
            f"admin_token is empty but server.host = {host!r} is not a loopback address: set "
            "admin_token (or SPEND_PROXY_ADMIN_TOKEN), or listen on 127.0.0.1"
        )


def _bearer(request: web.Request) -> bytes:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return credentials.strip().encode("utf-8", "surrogateescape")


@web.middleware
async def admin_token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin sub-app's middleware: rules 1 and 2."""
    if request.path == _PUBLIC_PATH:
        return await handler(request)
    token = request.config_dict[SETTINGS].admin_token.get_secret_value().encode()
    if not token:
        raise AdminApiDisabled()
    presented = _bearer(request)
    if not presented or not hmac.compare_digest(presented, token):
        raise InvalidAdminToken()
    return await handler(request)
