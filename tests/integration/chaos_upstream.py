"""A fake OpenAI upstream that misbehaves on request, for the ``reserve`` mode tests.

Each call says what it wants in the ``x-chaos`` header (the proxy forwards unknown headers
unchanged), one of :class:`Act`. Usage is derived from the request so that the proxy's
reservation estimate (``proxy/estimate.py``) is an upper bound of it, as it is for a real model
when the client sets ``max_tokens``: ``prompt_tokens`` = characters of the message contents // 4,
``completion_tokens`` = the request's ``max_tokens``.

Served: ``POST /v1/chat/completions`` only, JSON or SSE (``"stream": true``; the usage-only chunk
is sent when ``stream_options.include_usage`` is true, as OpenAI does).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["Act", "ChaosUpstream"]


class Act(enum.StrEnum):
    """What the upstream does with one call (the ``x-chaos`` header)."""

    OK = "ok"  # JSON answer with usage
    SLOW = "slow"  # JSON answer with usage after ``delay_s`` (the client may give up first)
    STREAM = "stream"  # a complete SSE stream with usage
    SLOW_STREAM = "slow-stream"  # ``slow_chunks`` SSE chunks, ``delay_s`` apart
    ERROR = "error"  # 500 with an error body and no usage
    RESET = "reset"  # drop the connection without answering
    HANG = "hang"  # answer nothing until the proxy's read timeout ends the call


@dataclass
class ChaosUpstream:
    """See the module docstring. ``url`` is set by whoever serves ``app()``."""

    url: str = ""
    delay_s: float = 0.02
    slow_chunks: int = 20
    hang_s: float = 5.0
    calls: dict[Act, int] = field(default_factory=dict)
    arrivals: dict[str, asyncio.Event] = field(default_factory=dict)

    def arrival(self, call_id: str) -> asyncio.Event:
        """Set when the call with this ``x-call-id`` header reaches the upstream."""
        return self.arrivals.setdefault(call_id, asyncio.Event())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    @staticmethod
    def usage(body: dict[str, Any]) -> dict[str, int]:
        chars = sum(len(str(message.get("content", ""))) for message in body["messages"])
        prompt, completion = chars // 4, int(body.get("max_tokens", 16))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        act = Act(request.headers.get("x-chaos", Act.OK))
        self.calls[act] = self.calls.get(act, 0) + 1
        self.arrival(request.headers.get("x-call-id", "")).set()
        if act is Act.ERROR:
            error = {"error": {"message": "boom", "type": "server_error"}}
            return web.json_response(error, status=500)
        if act is Act.RESET:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # never reaches the proxy: the connection is gone
        if act is Act.HANG:
            await asyncio.sleep(self.hang_s)
        if act is Act.SLOW:
            await asyncio.sleep(self.delay_s)
        if act in (Act.STREAM, Act.SLOW_STREAM):
            return await self._stream(request, body, act)
        payload = {
            "id": "chatcmpl-chaos",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": self.usage(body),
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def _stream(
        self, request: web.Request, body: dict[str, Any], act: Act
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-chaos", "object": "chat.completion.chunk", "model": body["model"]}
        chunks = self.slow_chunks if act is Act.SLOW_STREAM else 3
        try:
            for _ in range(chunks):
                if act is Act.SLOW_STREAM:
                    await asyncio.sleep(self.delay_s)
                delta = {"index": 0, "delta": {"content": "word "}, "finish_reason": None}
                await response.write(_event(base | {"choices": [delta]}))
            options = body.get("stream_options") or {}
            if options.get("include_usage"):
                await response.write(_event(base | {"choices": [], "usage": self.usage(body)}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:  # the proxy closed the stream (its client went away)
            pass
        return response


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
