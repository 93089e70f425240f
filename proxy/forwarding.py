"""Sending a client's call upstream: one shared ``ClientSession``, header hygiene, error mapping.

Rules (SPEC §4 "What the client sends reaches the upstream unchanged except ...")
1. One ``aiohttp.ClientSession`` per process, created and closed by the app's ``cleanup_ctx``;
   its connector is sized for the proxy's concurrency and keeps connections alive.
2. URL: an OpenAI-style ``base_url`` includes the API version (``https://api.openai.com/v1``), as
   the OpenAI SDK's does, so ``/v1/chat/completions`` goes to ``base_url + /chat/completions``.
   An Anthropic-style ``base_url`` is the origin, so the client's whole path is appended. The
   path sent is the endpoint's own (as configured, never the client's spelling of it: no
   ``..``, no percent-encoding games, and the client's ``Host`` and absolute-form targets play
   no part), so the proxy only ever reaches ``base_url`` + a known path. The query string is
   kept byte for byte (Claude Code's ``/v1/messages?beta=true``).
3. Toward the upstream: the client's credentials (``authorization``, ``x-api-key``), hop-by-hop
   headers (RFC 9110 §7.6.1, plus any named in ``Connection``), ``host``, ``content-length`` and
   ``accept-encoding`` are removed; the upstream's key is set (``Authorization: Bearer`` for
   provider ``openai``, ``x-api-key`` for ``anthropic``). Every other header passes untouched.
   ``accept-encoding`` is the session's own: the proxy must read usage out of the body, so it
   negotiates the encodings it can decode itself and answers the client uncompressed. A body
   sent without ``Content-Type`` gets ``application/json`` (the proxy parsed it as JSON).
4. Toward the client: hop-by-hop headers, ``content-length`` and ``content-encoding`` (the body
   was decoded) are removed; everything else, status and body included, passes unchanged.
5. A connection failure maps to 502 ``upstream_error``, a timeout to 504. Upstream HTTP errors
   are not errors here: they are answers, relayed as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.errors import UpstreamTimeout, UpstreamUnreachable
from proxy.routing import Route
from proxy.settings import UpstreamSettings

__all__ = ["Upstreams", "client_headers", "create_session", "upstream_headers"]

# Connections to upstreams held open at once; sized well above the concurrency one process serves.
CONNECTION_LIMIT = 1024

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_DROP_TO_UPSTREAM = HOP_BY_HOP | {
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "accept-encoding",
}
_DROP_TO_CLIENT = HOP_BY_HOP | {"content-length", "content-encoding"}


def create_session() -> aiohttp.ClientSession:
    """The process's upstream session (rule 1). Call inside a running event loop."""
    connector = aiohttp.TCPConnector(
        limit=CONNECTION_LIMIT, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60
    )
    # No User-Agent of our own: the client's passes through, or none does.
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(","))


def upstream_headers(
    incoming: CIMultiDictProxy[str], upstream: UpstreamSettings
) -> CIMultiDict[str]:
    """The headers to send upstream for a client's request (rule 3)."""
    named = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in _DROP_TO_UPSTREAM and lower not in named:
            out.add(name, value)
    key = upstream.api_key.get_secret_value()
    if key:
        if upstream.provider == "anthropic":
            out["x-api-key"] = key
        else:
            out["Authorization"] = f"Bearer {key}"
    if "Content-Type" not in out:
        out["Content-Type"] = "application/json"
    return out


def client_headers(incoming: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The upstream response's headers as relayed to the client (rule 4)."""
    named = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in _DROP_TO_CLIENT and lower not in named:
            out.add(name, value)
    return out


class Upstreams:
    """The shared session plus, per upstream, its precomputed timeout (rule 2 and 5)."""

    def __init__(
        self, session: aiohttp.ClientSession, upstreams: Mapping[str, UpstreamSettings]
    ) -> None:
        self._session = session
        self._timeouts = {
            name: aiohttp.ClientTimeout(
                total=None, sock_connect=up.connect_timeout_s, sock_read=up.timeout_s
            )
            for name, up in upstreams.items()
        }

    @staticmethod
    def url(route: Route, path: str, query_string: str) -> URL:
        """The upstream URL for a client path such as ``/v1/chat/completions`` (rule 2).
        ``path`` and ``query_string`` are taken as already percent-encoded."""
        base = route.settings.base_url
        if route.settings.provider == "openai" and path.startswith("/v1/"):
            path = path[3:]
        text = base + path if not query_string else f"{base}{path}?{query_string}"
        return URL(text, encoded=True)

    async def send(
        self, route: Route, request: web.Request, path: str, body: bytes
    ) -> aiohttp.ClientResponse:
        """Send the call to ``path`` (the endpoint's, rule 2) with the client's query string;
        the caller must ``release()`` the response. Raises 502/504 errors."""
        url = self.url(route, path, request.rel_url.raw_query_string)
        headers = upstream_headers(request.headers, route.settings)
        try:
            return await self._session.request(
                request.method,
                url,
                data=body,
                headers=headers,
                timeout=self._timeouts[route.upstream],
                allow_redirects=False,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(route.upstream) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(route.upstream) from exc

    @staticmethod
    async def read(route: Route, response: aiohttp.ClientResponse) -> bytes:
        """The whole body of a non-streaming answer. Raises 502/504 errors."""
        try:
            return await response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(route.upstream) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(route.upstream) from exc
