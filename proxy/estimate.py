"""Token estimates from text, for the two times the proxy has no usage from the upstream.

1. Before a call, in enforcement mode ``reserve``: an upper-bound-ish cost to reserve
   (:func:`reservation_usage`): input = request text / 4, output = the request's own
   ``max_completion_tokens``/``max_tokens``/``max_output_tokens`` if given, else the model's
   maximum output (from the price table) capped by ``max_estimate_output_tokens``; times
   ``n`` / ``best_of`` when the request asks for several outputs.
2. After a stream that ended without a usage block (client disconnect, upstream cut): the charge
   is ``request text / 4`` input tokens and ``relayed text / 4`` output tokens
   (:func:`fallback_usage`), and the ledger row is marked ``estimated`` (SPEC §3).

Rules
- "Text" is the length in characters of the strings in the request's prompt-bearing fields,
  except ``data:`` URLs (inline images and files are not text; their tokens are unknowable
  here). 4 characters per token is the usual rule of thumb for English with BPE tokenizers.
- Relayed text is measured lazily (:class:`TextMeter`): relayed SSE bytes are kept and only
  parsed when a count is asked for (i.e. only when the stream had no usage), or once they pass
  ``_METER_PENDING_MAX`` bytes (then counted and dropped, so memory stays bounded), so a normal
  stream pays no parsing for it.
- Which strings of a stream event are generated text depends on the API (an
  :data:`EventChars` per endpoint): OpenAI chat and Anthropic events hold only the new text
  beside metadata (:func:`event_chars`); the Responses API repeats the text in ``*.done``
  events and echoes the request in ``response.created``, so only ``*.delta`` events count there
  (:func:`responses_event_chars`).
- A stream that reported partial usage (Anthropic ``message_start``: exact input and cache
  counts) and then broke keeps those counts; only its output is estimated
  (:func:`fallback_usage` with ``seen``), never below the output count already reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from limits import Usage
from limits.money import ceil_div
from proxy.sse import SSEParser

__all__ = [
    "EventChars",
    "TextMeter",
    "event_chars",
    "fallback_usage",
    "request_text_chars",
    "reservation_usage",
    "responses_event_chars",
]

CHARS_PER_TOKEN = 4
_PROMPT_KEYS = ("messages", "prompt", "input", "system", "instructions", "tools")
_OUTPUT_CAP_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_CHOICES_KEYS = ("n", "best_of")  # OpenAI chat / legacy completions: several outputs per call
# Keys of stream events that are metadata, not generated text.
_METADATA_KEYS = frozenset(
    {"id", "object", "created", "model", "system_fingerprint", "service_tier", "type", "role"}
    | {"finish_reason", "index", "logprobs", "usage", "status", "stop_reason", "signature"}
)
_METER_PENDING_MAX = 64 * 1024


def _text_chars(value: Any, skip: frozenset[str] = frozenset()) -> int:
    if isinstance(value, str):
        return 0 if value.startswith("data:") else len(value)
    if isinstance(value, Mapping):
        return sum(_text_chars(v, skip) for k, v in value.items() if k not in skip)
    if isinstance(value, list):
        return sum(_text_chars(v, skip) for v in value)
    return 0


def request_text_chars(body: Mapping[str, Any]) -> int:
    """Characters of text in the request's prompt-bearing fields (see the rules)."""
    return sum(_text_chars(body.get(key)) for key in _PROMPT_KEYS)


def _tokens(chars: int) -> int:
    return ceil_div(chars, CHARS_PER_TOKEN)


def fallback_usage(request_chars: int, relayed_chars: int, seen: Usage | None = None) -> Usage:
    """The usage charged for a stream that ended without (complete) usage (module point 2):
    estimated from the text, or, when the stream reported partial usage (``seen``), that usage
    with its output raised to the estimate from the relayed text."""
    output_tokens = _tokens(relayed_chars)
    if seen is None:
        return Usage(input_tokens=_tokens(request_chars), output_tokens=output_tokens)
    return replace(seen, output_tokens=max(seen.output_tokens, output_tokens))


# Characters of generated text in one parsed stream event (module rules).
EventChars = Callable[[Any], int]


def event_chars(payload: Any) -> int:
    """Generated text in an OpenAI chat/completions or Anthropic stream event: every string
    except metadata (ids, model, roles, types, reasons, signatures) and data URLs."""
    return _text_chars(payload, _METADATA_KEYS)


def responses_event_chars(payload: Any) -> int:
    """Generated text in a Responses API stream event: the ``delta`` of ``*.delta`` events."""
    if not isinstance(payload, Mapping):
        return 0
    kind, delta = payload.get("type"), payload.get("delta")
    if isinstance(kind, str) and kind.endswith(".delta") and isinstance(delta, str):
        return len(delta)
    return 0


def reservation_usage(
    body: Mapping[str, Any], model_max_output_tokens: int | None, cap_tokens: int
) -> Usage:
    """The usage to reserve for before a call in ``reserve`` mode (module point 1)."""
    requested = next(
        (
            value
            for key in _OUTPUT_CAP_KEYS
            if isinstance(value := body.get(key), int) and not isinstance(value, bool)
        ),
        None,
    )
    if requested is not None and requested > 0:
        output = requested
    else:
        output = min(model_max_output_tokens or cap_tokens, cap_tokens)
    # The output cap is per choice: ``n`` choices (``best_of`` candidates) can each reach it.
    choices = max((_int(body.get(key)) for key in _CHOICES_KEYS), default=1)
    return Usage(input_tokens=_tokens(request_text_chars(body)), output_tokens=output * choices)


def _int(value: Any) -> int:
    """A positive JSON integer, else 1."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


class TextMeter:
    """Counts the generated text in relayed stream bytes, parsing them only when needed."""

    __slots__ = ("_chars", "_count", "_pending", "_pending_bytes")

    def __init__(self, count: EventChars = event_chars) -> None:
        self._count = count
        self._chars = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def add(self, blocks: bytes) -> None:
        """Note relayed SSE bytes: whole events, or the unterminated last one at the end."""
        if blocks:
            self._pending.append(blocks)
            self._pending_bytes += len(blocks)
            if self._pending_bytes > _METER_PENDING_MAX:
                self._flush()

    def chars(self) -> int:
        """Characters of generated text relayed so far."""
        self._flush()
        return self._chars

    def _flush(self) -> None:
        parser = SSEParser()
        events = [event for blocks in self._pending for event in parser.feed(blocks)]
        rest = parser.close()
        if rest:  # an unterminated last event still counts
            events += parser.feed(rest + b"\n\n")
        for event in events:
            try:
                payload = orjson.loads(event.data or b"")
            except orjson.JSONDecodeError:
                continue  # "[DONE]", comments and other non-JSON payloads carry no text
            self._chars += self._count(payload)
        self._pending.clear()
        self._pending_bytes = 0
