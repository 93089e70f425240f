"""Streamed chat completions: relay, usage-chunk stripping, and charging when a stream breaks."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from limits import Usage
from proxy.streaming import UsageTap, _may_carry_usage
from proxy.usage import chat_usage, final_readings
from tests.proxy.conftest import Proxy

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]  # 13 characters of text
STREAM_BODY = {"model": "test-model", "messages": MESSAGES, "stream": True}
CHAT_READER = final_readings(chat_usage)


def _chunks(raw: bytes) -> list[Any]:
    """The JSON payloads of an SSE body (``[DONE]`` as the string)."""
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[6:]
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


async def _stream_raw(proxy: Proxy, body: dict[str, Any]) -> bytes:
    headers = {**proxy.auth(), "Content-Type": "application/json"}
    data = orjson.dumps(body)
    async with proxy.client.post("/v1/chat/completions", data=data, headers=headers) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["x-spend-spent-micros"] == "0"
        return await r.read()


async def test_client_that_did_not_ask_for_usage_never_sees_the_usage_chunk(
    proxy: Proxy,
) -> None:
    chunks = _chunks(await _stream_raw(proxy, STREAM_BODY))
    assert chunks[-1] == "[DONE]"
    assert all(chunk["choices"] for chunk in chunks[:-1])
    assert proxy.upstream.seen[0].json["stream_options"] == {"include_usage": True}
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        stream = await client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True
        )
        sdk_chunks = [chunk async for chunk in stream]
    assert sdk_chunks
    assert all(chunk.choices for chunk in sdk_chunks)
    rows = await proxy.rows()
    assert [(r["cost_micros"], r["estimated"]) for r in rows] == [(190, 0), (190, 0)]


async def test_explicit_include_usage_false_is_stripped_and_other_options_kept(
    proxy: Proxy,
) -> None:
    options = {"include_usage": False, "include_obfuscation": False}
    chunks = _chunks(await _stream_raw(proxy, {**STREAM_BODY, "stream_options": options}))
    assert all(chunk["choices"] for chunk in chunks[:-1])
    sent = proxy.upstream.seen[0].json["stream_options"]
    assert sent == {"include_usage": True, "include_obfuscation": False}
    assert await proxy.ledger() == (190, 1)


async def test_client_that_asked_for_usage_gets_exactly_one_usage_chunk(proxy: Proxy) -> None:
    body = {**STREAM_BODY, "stream_options": {"include_usage": True}}
    raw = await _stream_raw(proxy, body)
    usage_chunks = [c for c in _chunks(raw) if c != "[DONE]" and c["choices"] == []]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["usage"]["prompt_tokens"] == 100
    assert proxy.upstream.seen[0].body == orjson.dumps(body)  # forwarded unchanged
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        stream = await client.chat.completions.create(
            model="test-model",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        sdk_usage = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert len(sdk_usage) == 1
    assert sdk_usage[0].completion_tokens == 50
    assert await proxy.ledger() == (380, 2)


async def test_stream_without_usage_is_charged_an_estimate(proxy: Proxy) -> None:
    proxy.upstream.omit_usage = True
    chunks = _chunks(await _stream_raw(proxy, STREAM_BODY))
    assert chunks[-1] == "[DONE]"
    [row] = await proxy.rows()
    # input: 13 characters -> 4 tokens; output: "Hello there, friend!" -> 20 -> 5 tokens
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (4, 5, 1)
    assert row["cost_micros"] == 4 * 1 + 5 * 2


async def test_upstream_cut_midway_truncates_the_client_stream_and_charges_an_estimate(
    proxy: Proxy,
) -> None:
    proxy.upstream.cut_after_chunks = 3  # role chunk, "Hello", " there", then the cut
    async with proxy.client.post(
        "/v1/chat/completions", json=STREAM_BODY, headers=proxy.auth()
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    [row] = await proxy.rows()
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (4, 3, 1)


async def test_client_disconnect_closes_the_upstream_and_charges_an_estimate(
    proxy: Proxy,
) -> None:
    proxy.upstream.chunk_delay_s = 0.05
    async with proxy.client.post(
        "/v1/chat/completions", json=STREAM_BODY, headers=proxy.auth()
    ) as response:
        assert await response.content.readuntil(b"\n\n")
    response.close()  # drop the connection mid-stream
    for _ in range(100):
        if (await proxy.ledger())[1]:
            break
        await asyncio.sleep(0.02)
    [row] = await proxy.rows()
    assert row["estimated"] == 1
    assert row["input_tokens"] == 4
    assert row["output_tokens"] <= 3
    await asyncio.sleep(0.4)  # the fake would have finished by now had the proxy not hung up
    assert proxy.upstream.streams_finished == 0


async def test_upstream_error_on_a_stream_request_is_passed_through_uncharged(
    proxy: Proxy,
) -> None:
    proxy.upstream.status = 400
    async with proxy.client.post(
        "/v1/chat/completions", json=STREAM_BODY, headers=proxy.auth()
    ) as response:
        assert response.status == 400
        assert await response.json() == proxy.upstream.error_body
    assert await proxy.ledger() == (0, 0)


async def test_an_error_answered_as_an_event_stream_is_relayed_uncharged(proxy: Proxy) -> None:
    proxy.upstream.status = 503
    proxy.upstream.error_content_type = "text/event-stream"
    async with proxy.client.post(
        "/v1/chat/completions", json=STREAM_BODY, headers=proxy.auth()
    ) as response:
        assert response.status == 503
        assert orjson.loads(await response.read()) == proxy.upstream.error_body
    assert await proxy.ledger() == (0, 0)


def _event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_tap_strips_only_the_usage_only_chunk_at_any_chunking() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    stream = (
        _event({"choices": [{"delta": {"content": "hi"}}], "usage": None})
        + b": comment\n\n"
        + _event({"model": "gpt-x", "choices": [], "usage": usage})
        + b"data: [DONE]\n\n"
    )
    expected = stream.replace(_event({"model": "gpt-x", "choices": [], "usage": usage}), b"")
    for size in (1, 2, 7, len(stream)):
        tap = UsageTap(CHAT_READER, strip_usage_chunk=True)
        pieces = [tap.feed(stream[i : i + size]) for i in range(0, len(stream), size)]
        assert b"".join(pieces) + tap.close() == expected
        assert tap.usage == Usage(input_tokens=3, output_tokens=2)
        assert tap.reported_model == "gpt-x"
        keep = UsageTap(CHAT_READER, strip_usage_chunk=False)
        assert b"".join(keep.feed(stream[i : i + size]) for i in range(0, len(stream), size)) == (
            stream
        )
        assert keep.usage == Usage(input_tokens=3, output_tokens=2)


@pytest.mark.parametrize("strip", [True, False])
def test_an_unterminated_last_event_is_relayed_once_and_its_usage_counts(strip: bool) -> None:
    tail = b'data: {"choices": [], "usage": {"prompt_tokens": 4}}'
    stream = _event({"choices": [{"delta": {"content": "hi"}}]}) + tail
    tap = UsageTap(CHAT_READER, strip_usage_chunk=strip)
    relayed = tap.feed(stream[:10]) + tap.feed(stream[10:]) + tap.close()
    assert relayed == stream
    assert tap.usage == Usage(input_tokens=4)


def test_crlf_streams_are_cut_at_event_ends() -> None:
    usage_event = b'data: {"choices":[],"usage":{"completion_tokens":2}}\r\n\r\n'
    stream = b'data: {"choices":[{"delta":{}}]}\r\n\r\n' + usage_event + b"data: [DONE]\r\n\r\n"
    tap = UsageTap(CHAT_READER, strip_usage_chunk=True)
    relayed = b"".join(tap.feed(stream[i : i + 5]) for i in range(0, len(stream), 5))
    assert relayed + tap.close() == stream.replace(usage_event, b"")
    assert tap.usage == Usage(output_tokens=2)


def test_usage_in_a_chunk_with_choices_is_kept() -> None:
    tap = UsageTap(CHAT_READER, strip_usage_chunk=True)
    event = _event({"choices": [{"delta": {}}], "usage": {"prompt_tokens": 1}})
    assert tap.feed(event) == event
    assert tap.usage == Usage(input_tokens=1)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"usage":null}', False),
        (b'{"usage": null, "x": 1}', False),
        (b'{"usage":{"prompt_tokens":1}}', True),
        (b'{"a":"usage"}', False),
        (b'{"choices":[]}', False),
        (b'{"usage": null, "response": {"usage": {"input_tokens": 2}}}', True),
    ],
)
def test_usage_precheck(data: bytes, expected: bool) -> None:
    assert _may_carry_usage(data) is expected
