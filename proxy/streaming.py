"""Relaying a streamed (SSE) answer to the client while watching it for usage (SPEC §4).

Loop (httpcore ``_async/http11.py`` style): read what the upstream has, write it to the client,
feed it to the pure parser (``proxy/sse.py``) on the side, repeat.

Rules
1. Bytes are relayed as they arrive: no buffering, one client write per upstream read.
2. When the proxy added ``stream_options.include_usage`` for a client that did not ask for it,
   the usage-only chunk (JSON with ``"choices": []`` and a usage block) must not reach the
   client (agents crash on it). Only then is the relay event-aligned: the bytes of each
   complete event are forwarded unchanged except that one event, and a trailing partial event
   waits for its end. Otherwise the upstream's bytes are written exactly as read.
3. The usage block is found by the :class:`UsageTap`: per chunk it only looks for the end of
   the last complete event and for a non-null ``"usage"``; only such events are parsed (SSE,
   then JSON), so a normal stream costs one parse (Anthropic's two). Each usage event is folded
   into the tap's :class:`~proxy.usage.Reading` by the endpoint's stream reader; the reading is
   ``final`` once the stream reported its complete usage (``proxy/usage.py`` rule 5).
4. Endings: the upstream finishes -> the client's stream is finished. The client goes away ->
   the upstream response is closed (the upstream stops generating). The upstream fails midway
   -> the client's connection is closed without the final chunk, so the client sees a truncated
   stream rather than a clean end. In every case the caller charges the usage seen, or an
   estimate from the relayed text (``proxy/estimate.py``) when there was none.
"""

from __future__ import annotations

import enum

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from limits import Usage
from proxy.estimate import EventChars, TextMeter, event_chars
from proxy.sse import SSEParser
from proxy.usage import Reading, StreamUsageReader, reported_model

__all__ = ["StreamEnd", "UsageTap", "relay_stream"]


def _may_carry_usage(data: bytes) -> bool:
    """Cheap pre-check: does this payload have a ``"usage"`` key whose value is not null?"""
    total = data.count(b'"usage"')
    if total == 0 or total == data.count(b'"usage":null'):  # compact JSON, as APIs send it
        return False
    at = data.find(b'"usage"')
    while at >= 0:
        rest = data[at + 7 : at + 24].lstrip(b" \t")
        if rest[:1] == b":" and not rest[1:].lstrip(b" \t").startswith(b"null"):
            return True
        at = data.find(b'"usage"', at + 7)
    return False


def _block_end(data: bytes) -> int:
    """The end of the last complete SSE block in ``data`` (after its blank line), or 0.

    A blank line ends a block whatever the line endings: ``\\n\\n`` (also inside
    ``\\r\\n\\n``), or ``\\n\\r\\n`` (also inside ``\\r\\n\\r\\n``)."""
    if data.endswith(b"\n\n"):  # the usual case: a chunk ends where an event does
        return len(data)
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)


class UsageTap:
    """Watches a stream for its usage block (rule 3) and keeps its text for an estimate.

    Per chunk it only finds where the last complete event ends: the pure parser
    (``proxy/sse.py``) runs on the rare stretch of complete events that mentions a non-null
    ``"usage"``, and on the kept text only if an estimate is needed.
    """

    __slots__ = ("_pending", "_reader", "_strip", "meter", "reading", "reported_model")

    def __init__(
        self,
        reader: StreamUsageReader,
        *,
        strip_usage_chunk: bool,
        text: EventChars = event_chars,
    ) -> None:
        self._reader = reader
        self._strip = strip_usage_chunk
        self._pending = b""  # bytes after the last complete event seen
        self.meter = TextMeter(text)
        self.reading: Reading | None = None
        self.reported_model: str | None = None

    @property
    def usage(self) -> Usage | None:
        """The usage reported so far (complete when ``reading.final``), or None."""
        return None if self.reading is None else self.reading.usage

    def feed(self, chunk: bytes) -> bytes:
        """Consume one upstream chunk; return the bytes to relay for it (rule 2): the chunk
        itself, or when stripping, the complete events it ends minus the usage-only one."""
        data = self._pending + chunk if self._pending else chunk
        end = _block_end(data)
        if end == 0:
            self._pending = data
            return b"" if self._strip else chunk
        complete, self._pending = data[:end], data[end:]
        self.meter.add(complete)
        if _may_carry_usage(complete):
            complete = self._inspect(complete)
        return complete if self._strip else chunk

    def close(self) -> bytes:
        """The end of the stream: the bytes of an unterminated last event that are still to be
        relayed (only when stripping: otherwise they went out with their chunk)."""
        rest, self._pending = self._pending, b""
        self.meter.add(rest)
        if _may_carry_usage(rest):
            self._inspect(rest + b"\n\n")  # its usage counts; its bytes go out unchanged
        return rest if self._strip else b""

    def _inspect(self, complete: bytes) -> bytes:
        """Parse complete events: note their usage; return them minus a usage-only chunk."""
        events = SSEParser().feed(complete)
        return b"".join(event.raw for event in events if self._keep(event.data))

    def _keep(self, data: bytes | None) -> bool:
        if data is None or not _may_carry_usage(data):
            return True
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(payload, dict):
            return True
        reading = self._reader(payload, self.usage)
        if reading is None:
            return True
        self.reading = reading
        self.reported_model = reported_model(payload) or self.reported_model
        return not (self._strip and payload.get("choices") == [])


class StreamEnd(enum.Enum):
    """How a relayed stream ended (rule 4)."""

    COMPLETE = "complete"
    CLIENT_GONE = "client_gone"
    UPSTREAM_FAILED = "upstream_failed"


async def relay_stream(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    tap: UsageTap,
) -> tuple[web.StreamResponse, StreamEnd]:
    """Relay ``upstream``'s body to the client through ``tap``; return the response and how the
    stream ended. Never raises for client or upstream failures;
    the upstream response is released or closed in every case, cancellation included."""
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    end = StreamEnd.CLIENT_GONE
    try:
        await response.prepare(request)
        end = await _pump(upstream, response, tap)
    except ConnectionError:  # the client went away (aiohttp's ClientConnectionResetError)
        end = StreamEnd.CLIENT_GONE
    finally:
        if end is StreamEnd.COMPLETE:
            upstream.release()
        else:
            upstream.close()  # the connection is mid-body: it cannot go back to the pool
    if end is StreamEnd.UPSTREAM_FAILED and request.transport is not None:
        request.transport.close()  # rule 4: the client sees a truncated stream, not a clean end
    return response, end


async def _pump(
    upstream: aiohttp.ClientResponse, response: web.StreamResponse, tap: UsageTap
) -> StreamEnd:
    """The relay loop. Client write failures propagate as ``ConnectionError``."""
    chunks = upstream.content.iter_any()
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        except (aiohttp.ClientError, TimeoutError):
            return StreamEnd.UPSTREAM_FAILED
        out = tap.feed(chunk)
        if out:
            await response.write(out)
    rest = tap.close()
    if rest:
        await response.write(rest)
    await response.write_eof()
    return StreamEnd.COMPLETE
