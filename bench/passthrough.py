"""The floor: a plain aiohttp pass-through proxy with no auth and no accounting.

spend-proxy is measured against this. It does what any aiohttp reverse proxy must do and nothing
that spend-proxy adds (key lookup, JSON parsing, limit check, usage parsing, ledger), so the
difference between the two is the cost of spend-limit enforcement.

Rules
1. Every request under ``/v1/`` goes to ``--upstream`` + the same path and query string, with the
   same method and body, over one pooled ``ClientSession`` (keep-alive, no connection limit).
2. The client's credentials are replaced by ``--upstream-key``; hop-by-hop headers are dropped
   both ways (RFC 9110 §7.6.1), as a real proxy must.
3. ``text/event-stream`` answers are relayed chunk by chunk as they arrive; anything else is read
   whole and sent with a Content-Length.
4. Same runtime as spend-proxy: uvloop, access log off, one process.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Mapping

import aiohttp
import uvloop
from aiohttp import web

__all__ = ["build_app", "main"]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Also never copied: framing and target are recomputed by aiohttp, credentials are replaced.
DROPPED = HOP_BY_HOP | {"host", "content-length", "authorization", "x-api-key"}
SESSION = web.AppKey("session", aiohttp.ClientSession)


def _forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in DROPPED}


def build_app(upstream: str, upstream_key: str) -> web.Application:
    base = upstream.rstrip("/")
    app = web.Application(client_max_size=16 * 1024 * 1024)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600),
            auto_decompress=False,
        )
        yield
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = _forwardable(request.headers)
        if upstream_key:
            headers["Authorization"] = f"Bearer {upstream_key}"
        body = await request.read()
        try:
            async with app[SESSION].request(
                request.method, base + request.rel_url.path_qs, data=body or None, headers=headers
            ) as answer:
                return await _relay(request, answer)
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = {"message": f"upstream error: {exc!r}", "type": "upstream_error"}
            return web.json_response({"error": error}, status=502)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/v1/{tail:.*}", forward)
    return app


async def _relay(request: web.Request, answer: aiohttp.ClientResponse) -> web.StreamResponse:
    headers = _forwardable(answer.headers)
    if answer.content_type != "text/event-stream":
        return web.Response(status=answer.status, body=await answer.read(), headers=headers)
    response = web.StreamResponse(status=answer.status, headers=headers)
    await response.prepare(request)
    async for chunk in answer.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18101)
    parser.add_argument("--upstream", default="http://127.0.0.1:18100", help="origin; no /v1")
    parser.add_argument("--upstream-key", default="", help="sent instead of the client's key")
    args = parser.parse_args(argv)
    print(f"pass-through pid={os.getpid()} on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        build_app(args.upstream, args.upstream_key),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
