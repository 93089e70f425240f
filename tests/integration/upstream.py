"""A fake OpenAI upstream whose every call reports its own token usage, and remembers it.

``tests/proxy/fake_upstream.py`` answers every call with the same counts; to check sums to the
micro-dollar, these tests need counts that differ per call and a record of what was reported.
Each call is identified by the ``x-request-id`` header the test client sends (the proxy
forwards it unchanged). ``tokens_for(call_id)`` picks the counts (deterministic pseudo-random by
default); ``reported[call_id]`` is what the upstream actually put in a usage block.

Served: ``POST /v1/chat/completions`` (JSON, or SSE with the usage-only chunk when
``stream_options.include_usage`` is true, as OpenAI does), ``POST /v1/responses`` (JSON, or SSE
ending in ``response.completed``), ``POST /v1/embeddings``. A model in ``snapshots`` is reported
under its dated name (``gpt-4o`` -> ``gpt-4o-2024-08-06``), as OpenAI does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from limits import Usage

__all__ = ["Reported", "Tokens", "UsageUpstream", "pseudo_random_tokens"]


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts in OpenAI's terms: ``cached`` is part of ``prompt``, ``reasoning`` part of
    ``completion``."""

    prompt: int
    cached: int = 0
    completion: int = 0
    reasoning: int = 0

    def usage(self) -> Usage:
        """SPEC §3: uncached prompt at the input price, cached at the cache-read price,
        completion (reasoning inside) at the output price."""
        return Usage(
            input_tokens=self.prompt - self.cached,
            output_tokens=self.completion,
            cache_read_tokens=self.cached,
            reasoning_tokens=self.reasoning,
        )


@dataclass(frozen=True, slots=True)
class Reported:
    """One usage block the upstream sent."""

    path: str
    requested_model: str
    reported_model: str
    tokens: Tokens


def pseudo_random_tokens(call_id: str) -> Tokens:
    """Counts derived from the call id: varied, reproducible, cached <= prompt."""
    digest = hashlib.sha256(call_id.encode()).digest()
    prompt = 1 + int.from_bytes(digest[0:4]) % 6000
    cached = int.from_bytes(digest[4:8]) % (prompt + 1) if digest[8] % 3 else 0
    completion = 1 + int.from_bytes(digest[9:12]) % 2500
    reasoning = int.from_bytes(digest[12:14]) % (completion + 1) if digest[14] % 2 else 0
    return Tokens(prompt, cached, completion, reasoning)


def _event(payload: dict[str, Any], name: str | None = None) -> bytes:
    head = b"" if name is None else b"event: " + name.encode() + b"\n"
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class UsageUpstream:
    """See the module docstring. ``url`` is set by whoever serves ``app()``."""

    tokens_for: Callable[[str], Tokens] = pseudo_random_tokens
    snapshots: dict[str, str] = field(default_factory=lambda: {"gpt-4o": "gpt-4o-2024-08-06"})
    url: str = ""
    reported: dict[str, Reported] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    requests: int = 0
    latency_s: float = 0.0  # before answering: a call that takes time, as real ones do

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    async def _begin(self, request: web.Request) -> tuple[str, dict[str, Any], Tokens]:
        self.requests += 1
        body = orjson.loads(await request.read())
        call_id = request.headers.get("x-request-id", "")
        assert call_id, "every test call carries an x-request-id"
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return call_id, body, self.tokens_for(call_id)

    def _report(self, request: web.Request, call_id: str, model: str, tokens: Tokens) -> str:
        """Record the usage block about to be sent; returns the model name to report."""
        reported_model = self.snapshots.get(model, model)
        if call_id in self.reported:
            self.duplicates.append(call_id)
        self.reported[call_id] = Reported(request.path, model, reported_model, tokens)
        return reported_model

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        call_id, body, tokens = await self._begin(request)
        usage = {
            "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion,
            "total_tokens": tokens.prompt + tokens.completion,
            "prompt_tokens_details": {"cached_tokens": tokens.cached},
            "completion_tokens_details": {"reasoning_tokens": tokens.reasoning},
        }
        base = {"id": f"chatcmpl-{call_id}", "created": 1_700_000_000, "model": body["model"]}
        if not body.get("stream"):
            model = self._report(request, call_id, body["model"], tokens)
            message = {"role": "assistant", "content": "Hello there"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            payload = base | {"object": "chat.completion", "model": model, "choices": [choice]}
            return web.json_response(payload | {"usage": usage}, dumps=_dumps)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = base | {"object": "chat.completion.chunk"}
        for delta in ({"role": "assistant", "content": ""}, {"content": "Hello"}, {}):
            reason = None if delta else "stop"
            choice = {"index": 0, "delta": delta, "finish_reason": reason}
            await response.write(_event(chunk | {"choices": [choice]}))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            model = self._report(request, call_id, body["model"], tokens)
            await response.write(_event(chunk | {"model": model, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        call_id, body, tokens = await self._begin(request)
        usage = {
            "input_tokens": tokens.prompt,
            "input_tokens_details": {"cached_tokens": tokens.cached},
            "output_tokens": tokens.completion,
            "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
            "total_tokens": tokens.prompt + tokens.completion,
        }
        model = self._report(request, call_id, body["model"], tokens)
        done = {"id": f"resp_{call_id}", "object": "response", "model": model, "usage": usage}
        if not body.get("stream"):
            return web.json_response(done, dumps=_dumps)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        created = {"type": "response.created", "response": done | {"usage": None}}
        await response.write(_event(created, "response.created"))
        delta = {"type": "response.output_text.delta", "delta": "Hello"}
        await response.write(_event(delta, "response.output_text.delta"))
        completed = {"type": "response.completed", "response": done}
        await response.write(_event(completed, "response.completed"))
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        call_id, body, tokens = await self._begin(request)
        tokens = Tokens(prompt=tokens.prompt)  # embeddings report prompt tokens only
        model = self._report(request, call_id, body["model"], tokens)
        payload = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
            "model": model,
            "usage": {"prompt_tokens": tokens.prompt, "total_tokens": tokens.prompt},
        }
        return web.json_response(payload, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
