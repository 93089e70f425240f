"""A fake OpenAI-compatible upstream: a real ``web.Application`` served on loopback.

It answers ``POST /v1/chat/completions`` (JSON, or SSE when ``"stream": true``) and the other
OpenAI paths the proxy forwards, with a usage block whose token counts the tests set; it records
every request it receives (method, path, query, headers, body) so tests can assert exactly what
the proxy forwarded. Like OpenAI, a stream carries ``"usage": null`` on every chunk and a final
usage-only chunk with ``"choices": []`` only when ``stream_options.include_usage`` is true.

Knobs (attributes, set by a test before its call): ``status``/``error_body`` (answer an error),
``hang`` (never answer until the test ends), ``chunk_delay_s``, ``cut_after_chunks`` (drop the
connection mid-stream), ``omit_usage``, ``reported_model``, ``response_headers`` and the token
counts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

CONTENT = ["Hello", " there", ",", " friend", "!"]


@dataclass(frozen=True)
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeUpstream:
    url: str = ""  # the base URL (``.../v1``), set once the server listens
    prompt_tokens: int = 100
    cached_tokens: int = 20
    completion_tokens: int = 50
    reasoning_tokens: int = 10
    status: int = 200
    error_body: dict[str, Any] = field(
        default_factory=lambda: {
            "error": {"message": "boom", "type": "server_error", "param": None, "code": None}
        }
    )
    error_content_type: str = "application/json"
    omit_usage: bool = False
    reported_model: str | None = None
    cut_after_chunks: int | None = None
    hang: bool = False
    chunk_delay_s: float = 0.0
    response_headers: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    streams_finished: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        return app

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        raw_query = request.rel_url.raw_query_string
        seen = Seen(request.method, request.path, raw_query, request.headers, body)
        self.seen.append(seen)
        if self.hang:
            await asyncio.wait_for(self.released.wait(), timeout=30)
        return body

    def _error(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=orjson.dumps(self.error_body),
            content_type=self.error_content_type,
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await self._record(request))
        if self.status != 200:
            return self._error()
        model = self.reported_model or body["model"]
        if body.get("stream"):
            return await self._stream(request, body, model)
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(CONTENT)},
                    "finish_reason": "stop",
                }
            ],
        }
        if not self.omit_usage:
            payload["usage"] = self.usage()
        return web.Response(
            body=orjson.dumps(payload),
            content_type="application/json",
            headers=self.response_headers,
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str
    ) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) and not self.omit_usage
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk"}
        base |= {"created": 1_700_000_000, "model": model}
        if include_usage:
            base["usage"] = None
        deltas = [{"role": "assistant", "content": ""}] + [{"content": c} for c in CONTENT]
        for number, delta in enumerate(deltas):
            if self.cut_after_chunks is not None and number == self.cut_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return response
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            await response.write(_event(base | {"choices": [choice]}))
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await response.write(_event(base | {"choices": [finish]}))
        if include_usage:
            await response.write(_event(base | {"choices": [], "usage": self.usage()}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.streams_finished += 1
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await self._record(request))
        if self.status != 200:
            return self._error()
        payload = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": body["model"],
            "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens},
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API: usage in the response object, or in ``response.completed``."""
        body = orjson.loads(await self._record(request))
        usage = {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        done = {"id": "resp_1", "object": "response", "model": body["model"], "usage": usage}
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(done), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": {**done, "usage": None}}),
            ("response.output_text.delta", {"delta": "Hello"}),
            ("response.completed", {"response": done}),
        ]
        for name, payload in events:
            data = _event({"type": name, **payload})
            await response.write(b"event: " + name.encode() + b"\n" + data)
        await response.write_eof()
        return response


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
