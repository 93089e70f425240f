"""API key -> :class:`Principal`: the authentication middleware (SPEC §4 "Auth").

Rules
1. Only client-facing paths (``/v1/...``) are authenticated here; ``/healthz``, ``/readyz``,
   ``/metrics`` and the admin API (its own token) are not.
2. The key comes from ``Authorization: Bearer <key>`` (as the OpenAI SDK sends it) or
   ``x-api-key: <key>`` (as the Anthropic SDK does). Only its SHA-256 digest is looked up
   (``limits.keys.hash_key``), through the per-process ``CachedDirectory``: no database query
   per request.
3. Missing, unknown or non-ASCII key -> 401 ``invalid_api_key``. A store failure -> 503:
   authentication never fails open (SPEC §2), unlike the spend check.
4. The key is never logged, not even in part.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDictProxy

from limits.errors import StoreError
from limits.keys import hash_key
from limits.ports import Principal
from proxy.errors import InvalidApiKey, ServiceUnavailable
from proxy.keys import DIRECTORY, PRINCIPAL

__all__ = ["auth_middleware", "presented_key"]

_CLIENT_PREFIX = "/v1/"


def presented_key(headers: CIMultiDictProxy[str]) -> str | None:
    """The API key a request presents (rule 2), or None."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    api_key = headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    return None


async def _authenticate(request: web.Request) -> Principal:
    key = presented_key(request.headers)
    if key is None:
        raise InvalidApiKey(
            "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
        )
    if not key.isascii():  # every real key is ASCII; others (e.g. bytes that are not UTF-8,
        # kept by aiohttp as surrogates) cannot be hashed as UTF-8 and match nothing anyway
        raise InvalidApiKey("Incorrect API key provided.")
    try:
        principal = await request.app[DIRECTORY].principal_for_key(hash_key(key))
    except StoreError as exc:
        raise ServiceUnavailable("The key store is unavailable; retry later.") from exc
    if principal is None:
        raise InvalidApiKey("Incorrect API key provided.")
    return principal


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate client-facing requests and keep the :class:`Principal` on the request."""
    if request.path.startswith(_CLIENT_PREFIX):
        request[PRINCIPAL] = await _authenticate(request)
    return await handler(request)
