"""The Responses API side of the fake upstream (``fake_upstream.py``): the response object
and the SSE event sequence OpenAI sends for one text message (``response.created``,
``response.in_progress``, the output item and content part events, one
``response.output_text.delta`` per piece of text, then the ``*.done`` events and
``response.completed``, which alone carries the usage).
"""

from __future__ import annotations

from typing import Any

import orjson

CONTENT = ["Hello", " there", ",", " friend", "!"]
TEXT = "".join(CONTENT)


def sse(payload: Any, event: str | None = None) -> bytes:
    """One SSE event (``event:`` line first when named)."""
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def message_item(status: str) -> dict[str, Any]:
    content: list[Any] = [] if status != "completed" else [_output_text(TEXT)]
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": status}
    return item | {"content": content}


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def response(model: str, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def response_events(model: str, done: dict[str, Any]) -> list[bytes]:
    """The Responses API's stream for one text message, as OpenAI sends it."""
    started = response(model, "in_progress", [], None)
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": message_item("in_progress")}),
        ("response.content_part.added", {**where, "part": _output_text("")}),
        *[("response.output_text.delta", {**where, "delta": c}) for c in CONTENT],
        ("response.output_text.done", {**where, "text": TEXT}),
        ("response.content_part.done", {**where, "part": _output_text(TEXT)}),
        ("response.output_item.done", {"output_index": 0, "item": message_item("completed")}),
        ("response.completed", {"response": done}),
    ]
    return [
        sse({"type": name, "sequence_number": number, **payload}, event=name)
        for number, (name, payload) in enumerate(events)
    ]
