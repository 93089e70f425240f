"""Pure parts of the Anthropic and passthrough support: merging Anthropic stream usage (latest
non-null count per field; partial until ``message_delta``), reading any API family's usage,
the model an event names, and the generated-text counters behind stream estimates."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from limits import Usage
from proxy.estimate import TextMeter, event_chars, fallback_usage, responses_event_chars
from proxy.streaming import UsageTap
from proxy.usage import Reading, anthropic_stream_usage, any_usage, reported_model
from tests.proxy.fake_anthropic import stream_events
from tests.proxy.fake_upstream import FakeUpstream

START = {
    "type": "message_start",
    "message": {
        "model": "claude-x",
        "usage": {
            "input_tokens": 100,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 20,
            "output_tokens": 1,
        },
    },
}
FULL = Usage(input_tokens=100, output_tokens=50, cache_read_tokens=20, cache_write_tokens=30)


def _fold(*events: dict[str, Any]) -> Reading | None:
    reading: Reading | None = None
    for event in events:
        usage = None if reading is None else reading.usage
        reading = anthropic_stream_usage(event, usage) or reading
    return reading


def test_message_start_is_partial_and_message_delta_completes_it() -> None:
    start = _fold(START)
    assert start == Reading(
        Usage(input_tokens=100, output_tokens=1, cache_read_tokens=20, cache_write_tokens=30),
        final=False,
    )
    delta = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 50}}
    assert _fold(START, delta) == Reading(FULL, final=True)


@pytest.mark.parametrize(
    "delta_usage",
    [
        {  # newer API versions: the cumulative counts again, nothing to add
            "input_tokens": 100,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 20,
            "output_tokens": 50,
        },
        {  # nulls keep what message_start said
            "input_tokens": None,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": None,
            "output_tokens": 50,
        },
    ],
)
def test_message_delta_counts_replace_never_add(delta_usage: dict[str, Any]) -> None:
    delta = {"type": "message_delta", "usage": delta_usage}
    assert _fold(START, delta) == Reading(FULL, final=True)


def test_the_latest_non_null_count_wins() -> None:
    corrected = {"type": "message_delta", "usage": {"input_tokens": 140, "output_tokens": 50}}
    reading = _fold(START, corrected)
    assert reading is not None
    assert reading.usage == Usage(
        input_tokens=140, output_tokens=50, cache_read_tokens=20, cache_write_tokens=30
    )


def test_events_without_usage_change_nothing() -> None:
    assert anthropic_stream_usage({"type": "ping"}, None) is None
    delta = {"type": "content_block_delta", "delta": {"text": "hi"}}
    assert anthropic_stream_usage(delta, FULL) is None
    assert anthropic_stream_usage({"type": "message_start", "message": {}}, None) is None


@pytest.mark.parametrize("size", [1, 3, 17, 10_000])
def test_the_tap_folds_a_real_anthropic_stream_at_any_chunking(size: int) -> None:
    stream = b"".join(stream_events(FakeUpstream(), "claude-x"))
    tap = UsageTap(anthropic_stream_usage, strip_usage_chunk=False)
    relayed = b"".join(tap.feed(stream[i : i + size]) for i in range(0, len(stream), size))
    assert relayed + tap.close() == stream  # byte for byte
    assert tap.reading == Reading(FULL, final=True)
    assert tap.reported_model == "claude-x"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"usage": {"prompt_tokens": 10, "completion_tokens": 2}}, Usage(10, 2)),
        (
            {"usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4}}},
            Usage(input_tokens=6, cache_read_tokens=4),
        ),
        ({"usage": {"input_tokens": 7, "output_tokens": 3}}, Usage(7, 3)),
        (
            {"usage": {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 2}}},
            Usage(input_tokens=5, cache_read_tokens=2),
        ),
        (
            {"usage": {"input_tokens": 7, "cache_read_input_tokens": 2}},
            Usage(input_tokens=7, cache_read_tokens=2),
        ),
        ({"type": "response.completed", "response": {"usage": {"input_tokens": 1}}}, Usage(1)),
        (
            START,
            Usage(input_tokens=100, output_tokens=1, cache_read_tokens=20, cache_write_tokens=30),
        ),
        ({"usage": {"total_tokens": 9}}, None),  # not a block the proxy can price
        ({"usage": None}, None),
        ({"results": []}, None),
    ],
)
def test_any_usage_reads_each_family(payload: dict[str, Any], expected: Usage | None) -> None:
    assert any_usage(payload) == expected


def test_reported_model_is_found_where_each_api_puts_it() -> None:
    assert reported_model({"model": "gpt-x", "choices": []}) == "gpt-x"
    assert reported_model({"type": "response.completed", "response": {"model": "r"}}) == "r"
    assert reported_model(START) == "claude-x"
    assert reported_model({"type": "message_delta", "usage": {}}) is None
    assert reported_model({"model": 5}) is None


def _sse(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_responses_text_counts_deltas_only() -> None:
    assert responses_event_chars({"type": "response.output_text.delta", "delta": "Hello"}) == 5
    assert responses_event_chars({"type": "response.output_text.done", "text": "Hello"}) == 0
    echoed = {"type": "response.created", "response": {"instructions": "x" * 500}}
    assert responses_event_chars(echoed) == 0
    assert responses_event_chars(["not", "an", "event"]) == 0
    meter = TextMeter(responses_event_chars)
    meter.add(_sse(echoed) + _sse({"type": "response.output_text.delta", "delta": "abc"}))
    assert meter.chars() == 3


def test_anthropic_text_counts_the_deltas_not_signatures_or_types() -> None:
    assert (
        event_chars({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}})
        == 2
    )
    signature = {"type": "signature_delta", "signature": "s" * 300}
    assert event_chars({"type": "content_block_delta", "delta": signature}) == 0
    assert event_chars(START) == 0


def test_a_partial_reading_keeps_its_counts_and_raises_only_the_output() -> None:
    seen = Usage(input_tokens=100, output_tokens=1, cache_read_tokens=20, cache_write_tokens=30)
    assert fallback_usage(999, 40, seen) == Usage(
        input_tokens=100, output_tokens=10, cache_read_tokens=20, cache_write_tokens=30
    )
    more = Usage(input_tokens=100, output_tokens=90)
    assert fallback_usage(999, 40, more) == more  # never below what the stream reported
    assert fallback_usage(8, 40) == Usage(input_tokens=2, output_tokens=10)
