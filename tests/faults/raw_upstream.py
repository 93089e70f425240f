"""An upstream that misbehaves on purpose: one ``mode`` per fault the proxy must survive.

Modes of ``POST /v1/chat/completions`` (set ``RawUpstream.mode`` before a call):

- ``malformed_json``: 200 ``application/json`` whose body is not JSON (but mentions ``"usage"``).
- ``non_object_json``: 200 JSON that is a list holding a usage-looking object.
- ``reset``: the TCP connection is closed before any answer (the proxy sees a disconnect).
- ``large``: a 200 JSON answer of ``large_bytes`` bytes, with a usage block at the end.
- ``garbage_sse``: 200 ``text/event-stream`` of bytes that are not SSE, then a clean end.
- ``truncated_sse``: a few good chunks, then a half event and the connection cut.
- ``slow_sse``: one chunk, then ``slow_gap_s`` of silence, then the rest (with usage).
- ``hang``: read the request, then wait until the test ends (``release``).

Every request is counted in ``requests``; ``finished`` is set when a handler ran to its end,
and ``cancelled`` counts handlers that the proxy's disconnect interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

USAGE = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}


def _event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(content: str) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": None}
    return _event({"object": "chat.completion.chunk", "model": "test-model", "choices": [choice]})


@dataclass
class RawUpstream:
    url: str = ""
    mode: str = "malformed_json"
    large_bytes: int = 20 * 1024 * 1024
    slow_gap_s: float = 1.0
    requests: int = 0
    cancelled: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        try:
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
            handler = getattr(self, "_" + self.mode)
            response = await handler(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished.set()
        return response

    async def _malformed_json(self, request: web.Request) -> web.StreamResponse:
        body = b'{"id": "x", "usage": {"prompt_tokens": 100, "completion_tokens": '
        return web.Response(body=body, content_type="application/json")

    async def _non_object_json(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps([{"usage": USAGE}]), content_type="application/json")

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()  # never sent: the connection is gone

    async def _large(self, request: web.Request) -> web.StreamResponse:
        pad = "x" * self.large_bytes
        message = {"role": "assistant", "content": pad}
        payload = {"model": "test-model", "choices": [{"index": 0, "message": message}]}
        return web.Response(
            body=orjson.dumps(payload | {"usage": USAGE}), content_type="application/json"
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        return response

    async def _garbage_sse(self, request: web.Request) -> web.StreamResponse:
        response = await self._stream(request)
        await response.write(b"\xff\xfe not sse at all \x00\r\r\n{]}\n\ndata: {broken json\n\n")
        await response.write(b'data: {"usage": {"prompt_tokens": 5\n\n')  # broken JSON
        await response.write_eof()
        return response

    async def _truncated_sse(self, request: web.Request) -> web.StreamResponse:
        response = await self._stream(request)
        for word in ("Hello", " there"):
            await response.write(_chunk(word))
        await response.write(b'data: {"object": "chat.completion.chunk", "choi')
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def _slow_sse(self, request: web.Request) -> web.StreamResponse:
        response = await self._stream(request)
        await response.write(_chunk("first"))
        await asyncio.sleep(self.slow_gap_s)
        await response.write(_chunk(" second"))
        usage_chunk = {"object": "chat.completion.chunk", "model": "test-model", "choices": []}
        await response.write(_event(usage_chunk | {"usage": USAGE}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(self.release.wait(), timeout=30)
        return web.Response(status=204)
