"""Token estimates: the reservation before a call and the fallback after a cut stream."""

from __future__ import annotations

import orjson

from limits import Usage
from proxy.estimate import TextMeter, fallback_usage, request_text_chars, reservation_usage

BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "12345678"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "abcd"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ],
}


def test_request_text_counts_prompt_strings_but_not_data_urls() -> None:
    # "system" + "12345678" + "user" + "text" + "abcd" + "image_url" (the part's type)
    assert request_text_chars(BODY) == 6 + 8 + 4 + 4 + 4 + 9


def test_fallback_rounds_up_to_whole_tokens() -> None:
    assert fallback_usage(9, 1) == Usage(input_tokens=3, output_tokens=1)
    assert fallback_usage(0, 0) == Usage()


def test_reservation_uses_the_requested_cap_else_the_model_max_under_the_setting() -> None:
    assert reservation_usage({**BODY, "max_tokens": 100}, 4096, 32768).output_tokens == 100
    assert reservation_usage(BODY, 4096, 32768).output_tokens == 4096
    assert reservation_usage(BODY, 100_000, 32768).output_tokens == 32768
    assert reservation_usage(BODY, None, 32768).output_tokens == 32768


def _event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_meter_counts_generated_text_only_and_skips_non_json() -> None:
    meter = TextMeter()
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}],
    }
    meter.add(_event(chunk) + b": comment\n\n")
    meter.add(b"data: [DONE]\n\n")
    meter.add(b'data: {"choices": [{"delta": {"content": "abc"}}]}')  # unterminated last event
    assert meter.chars() == 8


def test_meter_flushes_when_pending_data_grows() -> None:
    meter = TextMeter()
    block = _event({"choices": [{"delta": {"content": "x" * 1000}}]})
    for _ in range(300):
        meter.add(block)
    assert len(meter._pending) < 300  # parsed along the way, memory stays bounded
    assert meter.chars() == 300_000
