"""The Anthropic side of the fake upstream (``fake_upstream.py``): ``POST /v1/messages`` as JSON
or SSE, and ``POST /v1/messages/count_tokens``.

A streamed message is the event sequence the Messages API sends: ``message_start`` (its
``message.usage`` holds the input and cache counts and an initial ``output_tokens`` of 1),
``content_block_start``, ``ping``, one ``content_block_delta`` per piece of text,
``content_block_stop``, ``message_delta`` (the cumulative ``output_tokens``) and
``message_stop``. Knobs of the fake: ``delta_usage = "full"`` makes ``message_delta`` carry
the input and cache counts too, as newer API versions do; ``start_input_tokens`` makes
``message_start`` report another input count (which ``message_delta`` then corrects, with
``"full"``); ``omit_usage`` drops every usage block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.proxy.fake_responses import CONTENT

if TYPE_CHECKING:
    from tests.proxy.fake_upstream import FakeUpstream


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": name, **payload})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def usage(fake: FakeUpstream, output_tokens: int | None = None) -> dict[str, Any]:
    """The whole usage block, as a non-streamed message carries it."""
    return {
        "input_tokens": fake.prompt_tokens,
        "cache_creation_input_tokens": fake.cache_write_tokens,
        "cache_read_input_tokens": fake.cached_tokens,
        "output_tokens": fake.completion_tokens if output_tokens is None else output_tokens,
    }


def _message(model: str, content: list[Any], stop_reason: str | None) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }


def stream_events(fake: FakeUpstream, model: str) -> list[bytes]:
    start = _message(model, [], None)
    delta_usage: dict[str, Any] = {"output_tokens": fake.completion_tokens}
    if not fake.omit_usage:
        start["usage"] = usage(fake, output_tokens=1)
        if fake.start_input_tokens is not None:
            start["usage"]["input_tokens"] = fake.start_input_tokens
        if fake.delta_usage == "full":
            delta_usage = usage(fake)
    block = {"type": "text", "text": ""}
    deltas = [{"index": 0, "delta": {"type": "text_delta", "text": text}} for text in CONTENT]
    final: dict[str, Any] = {"delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    if not fake.omit_usage:
        final["usage"] = delta_usage
    return [
        _event("message_start", {"message": start}),
        _event("content_block_start", {"index": 0, "content_block": block}),
        _event("ping", {}),
        *[_event("content_block_delta", delta) for delta in deltas],
        _event("content_block_stop", {"index": 0}),
        _event("message_delta", final),
        _event("message_stop", {}),
    ]


async def messages(fake: FakeUpstream, request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages``."""
    body = orjson.loads(await fake.record(request))
    if fake.status != 200:
        return fake.error()
    model = fake.reported_model or body["model"]
    if body.get("stream"):
        return await fake.send_events(request, stream_events(fake, model))
    message = _message(model, [{"type": "text", "text": "".join(CONTENT)}], "end_turn")
    if not fake.omit_usage:
        message["usage"] = usage(fake)
    return fake.answer(message)


async def count_tokens(fake: FakeUpstream, request: web.Request) -> web.Response:
    """``POST /v1/messages/count_tokens``: never a usage block."""
    await fake.record(request)
    if fake.status != 200:
        return fake.error()
    return fake.answer({"input_tokens": fake.prompt_tokens})
