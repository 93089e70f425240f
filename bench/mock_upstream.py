"""A fast OpenAI-compatible upstream for the benchmark (aiohttp on uvloop).

Routes
  POST /v1/chat/completions  ``chat.completion`` JSON, or with ``"stream": true`` an SSE stream of
                             ``chat.completion.chunk`` events
  GET  /v1/models            the model list
  GET  /health               ``ok`` (readiness)

Rules
1. Non-streaming answers carry a ``usage`` block: ``prompt_tokens`` ~ characters of the messages
   / 4, ``completion_tokens`` = ``--chunks`` (capped by ``max_tokens`` /
   ``max_completion_tokens``).
2. A stream is one role event, N content events (one token each), one finish event, then, only
   when the request has ``stream_options.include_usage``, a usage-only event with
   ``"choices": []`` (earlier events then carry ``"usage": null``, as OpenAI's do), then
   ``data: [DONE]``. Every event is written separately, so a proxy sees N+3 network writes.
3. Every answer has a fresh ``id`` (ledgers may key on it).
4. With ``--api-key`` set, a request without ``Authorization: Bearer <that key>`` gets 401: this
   proves the proxy replaced the client's credentials with the upstream key.
5. Cheap by design: event bodies are rendered once per (model, N, usage, prompt size) and only
   the id is spliced in per request, so the mock leaves the CPU to the proxy under test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from typing import Any

import orjson
import uvloop
from aiohttp import web

__all__ = ["build_app", "main"]

WORDS = ("every", "token", "that", "passes", "through", "a", "proxy", "costs", "somebody", "money")
_ID_MARK = "@@ID@@"
_CACHE_MAX = 256


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _split(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    """Render ``doc`` (whose ``id`` is the marker) as the bytes before and after the id."""
    before, after = orjson.dumps(doc).split(_ID_MARK.encode(), 1)
    return before, after


def _render_json(model: str, prompt_tokens: int, n: int) -> tuple[bytes, bytes]:
    content = " ".join(WORDS[i % len(WORDS)] for i in range(n))
    return _split(
        {
            "id": _ID_MARK,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(prompt_tokens, n),
            "system_fingerprint": "fp_bench",
        }
    )


def _render_stream(
    model: str, prompt_tokens: int, n: int, include_usage: bool
) -> list[tuple[bytes, bytes]]:
    base: dict[str, Any] = {"id": _ID_MARK, "object": "chat.completion.chunk"}
    base |= {"created": int(time.time()), "model": model, "system_fingerprint": "fp_bench"}
    if include_usage:
        base["usage"] = None

    def event(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return base | {"choices": [choice]}

    docs = [event({"role": "assistant", "content": ""}, None)]
    docs += [event({"content": (" " if i else "") + WORDS[i % len(WORDS)]}, None) for i in range(n)]
    docs.append(event({}, "stop"))
    if include_usage:
        docs.append(base | {"choices": [], "usage": _usage(prompt_tokens, n)})
    return [_split(doc) for doc in docs]


def _prompt_tokens(messages: Any) -> int:
    chars = 0
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        chars += 16 + (len(content) if isinstance(content, str) else 0)
    return max(1, chars // 4)


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return web.json_response(
        {"error": error}, status=status, dumps=lambda o: orjson.dumps(o).decode()
    )


class Upstream:
    """The handlers and their render cache."""

    def __init__(
        self,
        *,
        chunks: int,
        chunk_delay_s: float,
        latency_s: float,
        api_key: str,
        models: list[str],
    ) -> None:
        self.chunks = chunks
        self.models_served = models
        self.chunk_delay_s = chunk_delay_s
        self.latency_s = latency_s
        self.auth = f"Bearer {api_key}" if api_key else ""
        self.ids = itertools.count()
        self.id_prefix = f"chatcmpl-bench{os.getpid():x}-"
        self.cache: dict[tuple[Any, ...], Any] = {}

    def _rendered(self, key: tuple[Any, ...], render: Any) -> Any:
        found = self.cache.get(key)
        if found is None:
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            found = self.cache[key] = render(*key[1:])
        return found

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.auth and request.headers.get("Authorization") != self.auth:
            return _error(401, "Incorrect API key provided (mock upstream).", "invalid_api_key")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is a required property")
        model = str(body.get("model") or "unknown")
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        n = max(1, min(self.chunks, cap) if isinstance(cap, int) and cap > 0 else self.chunks)
        prompt_tokens = _prompt_tokens(body["messages"])
        rid = (self.id_prefix + str(next(self.ids))).encode()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if not body.get("stream"):
            before, after = self._rendered(("json", model, prompt_tokens, n), _render_json)
            return web.Response(body=before + rid + after, content_type="application/json")
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events = self._rendered(("sse", model, prompt_tokens, n, usage), _render_stream)
        return await self._stream(request, rid, events)

    async def _stream(
        self, request: web.Request, rid: bytes, events: list[tuple[bytes, bytes]]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        for index, (before, after) in enumerate(events):
            if self.chunk_delay_s and 0 < index < len(events) - 1:
                await asyncio.sleep(self.chunk_delay_s)
            await response.write(b"data: " + before + rid + after + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "bench"}
            for m in self.models_served
        ]
        return web.json_response({"object": "list", "data": data})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


def build_app(upstream: Upstream) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", upstream.chat)
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_get("/health", upstream.health)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before answering")
    parser.add_argument("--api-key", default="", help="require this upstream key")
    parser.add_argument("--models", default="gpt-4o-mini,gpt-4o", help="comma-separated")
    args = parser.parse_args(argv)
    upstream = Upstream(
        chunks=args.chunks,
        chunk_delay_s=args.chunk_delay_ms / 1000,
        latency_s=args.latency_ms / 1000,
        api_key=args.api_key,
        models=[m for m in args.models.split(",") if m],
    )
    print(f"mock upstream pid={os.getpid()} on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        build_app(upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
