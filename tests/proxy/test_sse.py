"""The pure SSE parser: events out of bytes, whatever the chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sse import Event, SSEParser

STREAM = (
    b'data: {"a":1}\n\n'
    b": keep-alive comment\n\n"
    b"event: ping\nid: 7\ndata: line one\ndata: line two\n\n"
    b"data:no-space\r\n\r\n"
    b"data: [DONE]\n\n"
)


def _all(chunks: list[bytes]) -> list[Event]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    assert parser.close() == b""
    return events


def test_events_fields_and_raw_bytes() -> None:
    events = _all([STREAM])
    assert [e.data for e in events] == [
        b'{"a":1}',
        None,
        b"line one\nline two",
        b"no-space",
        b"[DONE]",
    ]
    assert events[2].event == "ping"
    assert events[2].id == "7"
    assert events[3].id == "7"  # the last event id persists (WHATWG)
    assert b"".join(e.raw for e in events) == STREAM


def test_crlf_line_endings() -> None:
    events = _all([b"event: x\r\ndata: 1\r\ndata: 2\r\n\r\n"])
    assert [(e.event, e.data) for e in events] == [("x", b"1\n2")]


def test_partial_event_waits_and_close_returns_the_rest() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a"') == []
    assert parser.feed(b":1}\n") == []
    assert [e.data for e in parser.feed(b"\ndata: tail")] == [b'{"a":1}']
    assert parser.close() == b"data: tail"
    assert parser.feed(b"data: again\n\n")[0].data == b"again"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _all(chunks) == _all([STREAM])


@pytest.mark.parametrize("split", range(1, 6))
def test_crlf_split_between_cr_and_lf(split: int) -> None:
    data = b"data: x\r\n\r\n"
    assert [e.data for e in _all([data[: split + 5], data[split + 5 :]])] == [b"x"]
