"""A pure, incremental Server-Sent Events parser (h11 style: bytes in, events out, no I/O).

Algorithm (WHATWG HTML "Server-sent events", §9.2.6 "Interpreting an event stream")
1. :meth:`SSEParser.feed` appends bytes to a buffer and cuts it into lines ending in ``\\n``
   (a ``\\r`` before it is dropped, so ``\\r\\n`` works too; lone-``\\r`` line endings, which no
   LLM API sends, are not supported). A line that does not end yet waits for the next feed, so
   an event may be split across any number of chunks, at any byte.
2. ``field: value`` lines accumulate into the pending event; one leading space of the value is
   dropped; ``data`` lines join with ``\\n`` (multi-line data); lines starting with ``:`` are
   comments; a line without a colon is a field with an empty value.
3. An empty line completes the block, which is emitted as an :class:`Event` whatever it holds
   (``data is None`` for comment-only or empty blocks), so a relay loses no byte: ``raw`` is
   every byte of the block including its blank line, to forward events byte for byte.
4. :meth:`SSEParser.close` returns whatever was left after the last complete event (bytes of an
   unterminated event) so that a relay can flush it unchanged.
5. Speed: a block that is one ``data:`` line ending in ``\\n\\n`` (what LLM APIs send) is cut
   out in one step, with the same result as the general line-by-line path.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Event", "SSEParser"]


class Event(NamedTuple):
    """One dispatched event. ``data`` is None when the block had no ``data`` field.
    (A named tuple: built once per streamed chunk, it must be cheap to make.)"""

    data: bytes | None
    event: str | None
    id: str | None
    raw: bytes


class SSEParser:
    """Feed bytes, get complete events (see the module rules)."""

    __slots__ = ("_block_start", "_buffer", "_data", "_event", "_id", "_scanned")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._block_start = 0  # where the pending event's first line starts in the buffer
        self._scanned = 0  # bytes of the buffer already cut into lines
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Consume ``chunk``; return the events it completed, in order."""
        buffer = self._buffer
        buffer += chunk
        events: list[Event] = []
        start = self._scanned
        while True:
            if start == self._block_start and buffer.startswith(b"data: ", start):
                event = self._single_data_line(start)
                if event is not None:
                    events.append(event)
                    start = self._block_start = start + len(event.raw)
                    continue
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start : end - 1 if end > start and buffer[end - 1] == 13 else end])
            start = end + 1
            if line:
                self._field(line)
                continue
            events.append(self._dispatch(bytes(buffer[self._block_start : start])))
            self._block_start = start
        self._scanned = start
        if self._block_start:
            del buffer[: self._block_start]
            self._scanned -= self._block_start
            self._block_start = 0
        return events

    def _single_data_line(self, start: int) -> Event | None:
        """Fast path for the usual block, ``data: <payload>\\n\\n`` (rule 5), else None."""
        buffer = self._buffer
        end = buffer.find(b"\n\n", start)
        if end < 0 or buffer.find(b"\n", start, end) >= 0 or buffer[end - 1] == 13:
            return None
        return Event(bytes(buffer[start + 6 : end]), None, self._id, bytes(buffer[start : end + 2]))

    def close(self) -> bytes:
        """The bytes of an unterminated event at the end of the stream (rule 4), and reset."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._block_start = self._scanned = 0
        self._data = []
        self._event = None
        return rest

    def _field(self, line: bytes) -> None:
        if line[0] == 58:  # b":" -> a comment line
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id = value.decode("utf-8", "replace")

    def _dispatch(self, raw: bytes) -> Event:
        data = b"\n".join(self._data) if self._data else None
        event = Event(data, self._event, self._id, raw)
        self._data = []
        self._event = None
        # The last event id persists across events (WHATWG), so _id is kept.
        return event
