"""API usage JSON -> :class:`limits.Usage`, one mapping per API family (SPEC §3).

Rules
1. The four ``Usage`` categories are disjoint: cached input is taken *out of* the input count
   (OpenAI reports it inside ``prompt_tokens``/``input_tokens``; Anthropic reports it beside
   ``input_tokens``), so every token is priced once.
2. Reasoning tokens are already inside the output count (OpenAI ``completion_tokens`` /
   ``output_tokens``); they are copied to ``reasoning_tokens`` for information, never added.
3. Counts are read defensively: a missing, null, negative or non-integer count is 0, and a cached
   count larger than its total is capped at the total. An explicit all-zero usage is a real usage
   (charged 0), never "missing".
4. A mapping returns None when the object carries no usage block at all.
5. Streams (:data:`StreamUsageReader`): each event that carries usage gives a :class:`Reading`,
   folded over the previous one. OpenAI streams report their usage once, complete (the
   usage-only chat chunk, ``response.completed``/``.incomplete``/``.failed``). Anthropic splits
   it: ``message_start`` has the input and cache counts and an initial output count (a
   *partial* reading), the closing ``message_delta`` the cumulative ``output_tokens`` (the
   *final* reading); newer API versions repeat input and cache counts there too. Per field the
   latest non-null value wins, so both shapes give the same total and nothing is added twice.
   A stream that ends on a partial reading is charged as estimated (``proxy/estimate.py``).
6. :func:`any_usage` reads the answers of ``passthrough_paths``: whichever family the usage
   block's keys identify (``prompt_tokens``: OpenAI chat/embeddings; Anthropic's cache keys:
   Anthropic; else ``input_tokens``/``output_tokens``: Responses-style, as image generation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from limits import Usage

UsageReader = Callable[[Mapping[str, Any]], Usage | None]

__all__ = [
    "Reading",
    "StreamUsageReader",
    "UsageReader",
    "anthropic_stream_usage",
    "anthropic_usage",
    "any_usage",
    "chat_usage",
    "embeddings_usage",
    "final_readings",
    "reported_model",
    "responses_usage",
]


class Reading(NamedTuple):
    """The usage a stream has reported so far (rule 5); ``final`` once it is complete."""

    usage: Usage
    final: bool


# (event payload, the previous reading's usage or None) -> the new reading, or None when the
# event carries no usage (rule 5).
StreamUsageReader = Callable[[Mapping[str, Any], Usage | None], Reading | None]


def _count(block: Mapping[str, Any], key: str) -> int:
    value = block.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _details(block: Mapping[str, Any], key: str, inner: str) -> int:
    details = block.get(key)
    return _count(details, inner) if isinstance(details, Mapping) else 0


def _block(payload: Mapping[str, Any], key: str = "usage") -> Mapping[str, Any] | None:
    block = payload.get(key)
    return block if isinstance(block, Mapping) else None


def chat_usage(payload: Mapping[str, Any]) -> Usage | None:
    """OpenAI chat/completions and legacy completions: ``prompt_tokens`` (of which
    ``prompt_tokens_details.cached_tokens``), ``completion_tokens`` (of which
    ``completion_tokens_details.reasoning_tokens``)."""
    block = _block(payload)
    if block is None:
        return None
    prompt = _count(block, "prompt_tokens")
    cached = min(prompt, _details(block, "prompt_tokens_details", "cached_tokens"))
    return Usage(
        input_tokens=prompt - cached,
        output_tokens=_count(block, "completion_tokens"),
        cache_read_tokens=cached,
        reasoning_tokens=_details(block, "completion_tokens_details", "reasoning_tokens"),
    )


def responses_usage(payload: Mapping[str, Any]) -> Usage | None:
    """OpenAI Responses API: ``input_tokens`` (of which ``input_tokens_details.cached_tokens``),
    ``output_tokens`` (of which ``output_tokens_details.reasoning_tokens``). Accepts the
    response object or a ``response.completed`` event wrapping it."""
    inner = payload.get("response")
    if isinstance(inner, Mapping):
        payload = inner
    block = _block(payload)
    if block is None:
        return None
    total_input = _count(block, "input_tokens")
    cached = min(total_input, _details(block, "input_tokens_details", "cached_tokens"))
    return Usage(
        input_tokens=total_input - cached,
        output_tokens=_count(block, "output_tokens"),
        cache_read_tokens=cached,
        reasoning_tokens=_details(block, "output_tokens_details", "reasoning_tokens"),
    )


def embeddings_usage(payload: Mapping[str, Any]) -> Usage | None:
    """OpenAI embeddings: ``prompt_tokens`` only."""
    block = _block(payload)
    if block is None:
        return None
    return Usage(input_tokens=_count(block, "prompt_tokens"))


def anthropic_usage(payload: Mapping[str, Any]) -> Usage | None:
    """Anthropic messages: ``input_tokens`` (uncached), ``cache_creation_input_tokens``
    (cache-write price), ``cache_read_input_tokens``, ``output_tokens``. Accepts the message
    object or a ``message_start`` event wrapping it."""
    inner = payload.get("message")
    if isinstance(inner, Mapping):
        payload = inner
    block = _block(payload)
    if block is None:
        return None
    return Usage(
        input_tokens=_count(block, "input_tokens"),
        output_tokens=_count(block, "output_tokens"),
        cache_read_tokens=_count(block, "cache_read_input_tokens"),
        cache_write_tokens=_count(block, "cache_creation_input_tokens"),
    )


_ANTHROPIC_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_input_tokens", "cache_read_tokens"),
    ("cache_creation_input_tokens", "cache_write_tokens"),
)
_ANTHROPIC_CACHE_KEYS = ("cache_read_input_tokens", "cache_creation_input_tokens")


def anthropic_stream_usage(payload: Mapping[str, Any], previous: Usage | None) -> Reading | None:
    """One Anthropic stream event folded over the usage seen so far (rule 5): per field, the
    latest non-null count wins; ``message_start`` gives a partial reading, any later event
    with usage (``message_delta``) a final one."""
    start = payload.get("type") == "message_start"
    inner = payload.get("message")
    block = _block(inner) if start and isinstance(inner, Mapping) else _block(payload)
    if block is None:
        return None
    base = previous or Usage()
    counts = {
        field: _count(block, key) if block.get(key) is not None else getattr(base, field)
        for key, field in _ANTHROPIC_FIELDS
    }
    return Reading(Usage(**counts), final=not start)


def final_readings(reader: UsageReader) -> StreamUsageReader:
    """A stream reader for APIs whose streams report usage once, complete (rule 5)."""

    def read(payload: Mapping[str, Any], previous: Usage | None) -> Reading | None:
        usage = reader(payload)
        return None if usage is None else Reading(usage, final=True)

    return read


def any_usage(payload: Mapping[str, Any]) -> Usage | None:
    """The usage of a passthrough answer, in whichever API family it is written (rule 6)."""
    inner = payload.get("response") or payload.get("message")
    block = _block(inner) if isinstance(inner, Mapping) else None
    block = block or _block(payload)
    if block is None:
        return None
    if "prompt_tokens" in block:
        return chat_usage({"usage": block})
    if any(key in block for key in _ANTHROPIC_CACHE_KEYS):
        return anthropic_usage({"usage": block})
    if "input_tokens" in block or "output_tokens" in block:
        return responses_usage({"usage": block})
    return None


def reported_model(payload: Mapping[str, Any]) -> str | None:
    """The model an answer or stream event names: at the top (OpenAI chat, whole answers) or in
    the wrapped object (Responses ``response``, Anthropic ``message_start``'s ``message``)."""
    model = payload.get("model")
    if model is None:
        inner = payload.get("response") or payload.get("message")
        model = inner.get("model") if isinstance(inner, Mapping) else None
    return model if isinstance(model, str) else None
