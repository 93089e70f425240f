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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from limits import Usage

UsageReader = Callable[[Mapping[str, Any]], Usage | None]

__all__ = [
    "USAGE_READERS",
    "UsageReader",
    "anthropic_usage",
    "chat_usage",
    "embeddings_usage",
    "responses_usage",
]


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


# Client path -> the reader of its answers' usage (endpoints are added by listing them here).
USAGE_READERS: Mapping[str, UsageReader] = MappingProxyType(
    {
        "/v1/chat/completions": chat_usage,
        "/v1/completions": chat_usage,
        "/v1/responses": responses_usage,
        "/v1/embeddings": embeddings_usage,
        "/v1/messages": anthropic_usage,
    }
)
