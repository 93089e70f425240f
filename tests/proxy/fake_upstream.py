"""A fake LLM upstream: a real ``web.Application`` served on loopback (aiohttp
``examples/fake_server.py``), speaking OpenAI and Anthropic with usage blocks the tests set.

OpenAI (``/v1/...``): chat completions and legacy completions (JSON, or SSE when
``"stream": true``; like OpenAI, a stream carries ``"usage": null`` on every chunk and a final
usage-only chunk with ``"choices": []`` only when ``stream_options.include_usage`` is true),
embeddings, the Responses API (JSON, or the SSE event sequence ending in
``response.completed`` with the usage), and for ``passthrough_paths`` tests
``/v1/moderations`` (no usage), ``/v1/images/generations`` (gpt-image style usage) and
``GET /v1/files``. Anthropic (``fake_anthropic.py``): ``/v1/messages`` (JSON and SSE) and
``/v1/messages/count_tokens``.

Every request is recorded (method, path, query, headers, body) so tests assert exactly what the
proxy forwarded. Token counts: OpenAI reports ``prompt_tokens`` (of which ``cached_tokens``) and
``completion_tokens`` (of which ``reasoning_tokens``); Anthropic reports ``prompt_tokens`` as
its uncached ``input_tokens``, ``cached_tokens`` as ``cache_read_input_tokens``,
``cache_write_tokens`` as ``cache_creation_input_tokens`` and ``completion_tokens`` as
``output_tokens``.

Knobs (attributes a test sets before its call): ``status``/``error_body`` (answer an error),
``hang`` (never answer until the test ends), ``chunk_delay_s``, ``cut_after_chunks`` (drop the
connection before that event), ``omit_usage``, ``reported_model``, ``response_headers``, the
token counts, and the Anthropic ones of ``fake_anthropic.py``. A stream the proxy abandons is
counted in ``streams_aborted`` (and sets ``aborted``): the fake's next write fails once the
proxy has closed the connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

from tests.proxy import fake_anthropic
from tests.proxy.fake_responses import CONTENT, TEXT, message_item, response, response_events, sse

__all__ = ["CONTENT", "TEXT", "FakeUpstream", "Seen", "sse"]


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
    cache_write_tokens: int = 30
    delta_usage: str = "output"  # Anthropic message_delta usage: "output" or "full" (newer)
    start_input_tokens: int | None = None  # Anthropic message_start input count if it differs
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
    streams_aborted: int = 0
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def origin(self) -> str:
        """The server's origin: an Anthropic-style ``base_url``."""
        return self.url.removesuffix("/v1")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/moderations", self.moderations)
        app.router.add_post("/v1/images/generations", self.images)
        app.router.add_get("/v1/files", self.files)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        return app

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def responses_usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    async def record(self, request: web.Request) -> bytes:
        body = await request.read()
        raw_query = request.rel_url.raw_query_string
        seen = Seen(request.method, request.path, raw_query, request.headers, body)
        self.seen.append(seen)
        if self.hang:
            await asyncio.wait_for(self.released.wait(), timeout=30)
        return body

    def error(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=orjson.dumps(self.error_body),
            content_type=self.error_content_type,
        )

    def answer(self, payload: Any) -> web.Response:
        return web.Response(
            body=orjson.dumps(payload),
            content_type="application/json",
            headers=self.response_headers,
        )

    async def send_events(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        """Stream ``events`` with the knobs applied (cut, delay); note an abandoned stream."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for number, event in enumerate(events):
                if self.cut_after_chunks is not None and number == self.cut_after_chunks:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                await response.write(event)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.streams_aborted += 1
            self.aborted.set()
            raise
        self.streams_finished += 1
        return response

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._openai_text(request, "chat.completion")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._openai_text(request, "text_completion")

    async def _openai_text(self, request: web.Request, kind: str) -> web.StreamResponse:
        body = orjson.loads(await self.record(request))
        if self.status != 200:
            return self.error()
        base: dict[str, Any] = {"id": "cmpl-fake", "created": 1_700_000_000}
        base["model"] = self.reported_model or body["model"]
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage")) and not self.omit_usage
            return await self.send_events(request, _text_chunks(kind, base, include_usage, self))
        if kind == "chat.completion":
            message = {"role": "assistant", "content": TEXT}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": TEXT, "logprobs": None, "finish_reason": "stop"}
        payload = {**base, "object": kind, "choices": [choice]}
        if not self.omit_usage:
            payload["usage"] = self.usage()
        return self.answer(payload)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await self.record(request))
        if self.status != 200:
            return self.error()
        payload = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": body["model"],
            "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens},
        }
        return self.answer(payload)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API: usage in the response object, or in ``response.completed``."""
        body = orjson.loads(await self.record(request))
        if self.status != 200:
            return self.error()
        model = self.reported_model or body["model"]
        usage = None if self.omit_usage else self.responses_usage()
        done = response(model, "completed", [message_item("completed")], usage)
        if not body.get("stream"):
            return self.answer(done)
        return await self.send_events(request, response_events(model, done))

    async def moderations(self, request: web.Request) -> web.Response:
        body = orjson.loads(await self.record(request))
        result = {"flagged": False, "categories": {}, "category_scores": {}}
        return self.answer({"id": "modr-1", "model": body.get("model"), "results": [result]})

    async def images(self, request: web.Request) -> web.Response:
        """gpt-image style: ``input_tokens`` with details, ``output_tokens``."""
        body = orjson.loads(await self.record(request))
        usage = {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"text_tokens": self.prompt_tokens, "image_tokens": 0},
            "output_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        data = [{"b64_json": "AAAA"}]
        return self.answer({"created": 1, "model": body.get("model"), "data": data, "usage": usage})

    async def files(self, request: web.Request) -> web.Response:
        await self.record(request)
        return self.answer({"object": "list", "data": []})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await fake_anthropic.messages(self, request)

    async def count_tokens(self, request: web.Request) -> web.Response:
        return await fake_anthropic.count_tokens(self, request)


def _text_chunks(
    kind: str, base: dict[str, Any], include_usage: bool, fake: FakeUpstream
) -> list[bytes]:
    """The SSE events of a streamed chat or legacy completion."""
    base = {**base, "object": kind + ".chunk" if kind == "chat.completion" else kind}
    if include_usage:
        base["usage"] = None
    choices: list[dict[str, Any]]
    finish: dict[str, Any]
    if kind == "chat.completion":
        deltas = [{"role": "assistant", "content": ""}] + [{"content": c} for c in CONTENT]
        choices = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
    else:
        choices = [
            {"index": 0, "text": c, "logprobs": None, "finish_reason": None} for c in CONTENT
        ]
        finish = {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}
    events = [sse(base | {"choices": [choice]}) for choice in [*choices, finish]]
    if include_usage:
        events.append(sse(base | {"choices": [], "usage": fake.usage()}))
    return [*events, b"data: [DONE]\n\n"]
