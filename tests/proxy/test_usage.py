"""API usage JSON -> limits.Usage: every token priced once (SPEC §3)."""

from __future__ import annotations

from limits import Usage
from proxy.usage import anthropic_usage, chat_usage, embeddings_usage, responses_usage


def test_chat_cached_tokens_come_out_of_input_and_reasoning_is_informational() -> None:
    payload = {
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 20},
            "completion_tokens_details": {"reasoning_tokens": 10},
        }
    }
    usage = chat_usage(payload)
    assert usage == Usage(
        input_tokens=80, output_tokens=50, cache_read_tokens=20, reasoning_tokens=10
    )
    assert usage is not None
    assert usage.total_tokens == 150


def test_chat_defensive_reading() -> None:
    assert chat_usage({"usage": None}) is None
    assert chat_usage({"choices": []}) is None
    assert chat_usage({"usage": {}}) == Usage()  # explicit zero usage is a usage
    weird = {"prompt_tokens": 5, "completion_tokens": -3, "prompt_tokens_details": None}
    assert chat_usage({"usage": weird}) == Usage(input_tokens=5)
    capped = {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}
    assert chat_usage({"usage": capped}) == Usage(cache_read_tokens=5)
    assert chat_usage({"usage": {"prompt_tokens": True}}) == Usage()


def test_responses_usage_also_inside_a_completed_event() -> None:
    block = {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 10},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
    }
    expected = Usage(input_tokens=20, output_tokens=7, cache_read_tokens=10, reasoning_tokens=3)
    assert responses_usage({"usage": block}) == expected
    event = {"type": "response.completed", "response": {"usage": block}}
    assert responses_usage(event) == expected
    assert responses_usage({"type": "response.created", "response": {"usage": None}}) is None


def test_embeddings_and_anthropic() -> None:
    assert embeddings_usage({"usage": {"prompt_tokens": 8, "total_tokens": 8}}) == Usage(
        input_tokens=8
    )
    message = {
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 4,
            "cache_read_input_tokens": 6,
            "output_tokens": 3,
        }
    }
    expected = Usage(input_tokens=10, output_tokens=3, cache_read_tokens=6, cache_write_tokens=4)
    assert anthropic_usage(message) == expected
    assert anthropic_usage({"type": "message_start", "message": message}) == expected
