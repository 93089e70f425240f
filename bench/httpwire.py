"""A minimal keep-alive HTTP/1.1 client connection for the load generator.

Why not aiohttp's client: on a 2-core machine the load generator competes with the system under
test for CPU, so it must be cheap. This is an ``asyncio.Protocol`` (run on uvloop) that writes a
pre-encoded request and parses just enough of the response to know where it ends.

Rules
1. One request in flight per connection (closed loop): ``send`` returns a future that resolves to
   a :class:`Reply` when the whole response has arrived.
2. Framing: ``Content-Length``, ``Transfer-Encoding: chunked`` (trailers skipped) or, failing
   both, read until the peer closes. Anything else is a :class:`WireError`.
3. Timestamps come from ``time.perf_counter`` taken in ``data_received``: ``first_byte_at`` is
   the first byte of the status line, ``first_body_at`` the first byte of the body (for an SSE
   stream, the first event: what a user sees as "time to first token").
4. The parser keeps one buffer and a cursor; it never copies the buffer to drop consumed bytes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import cast

__all__ = ["Connection", "Reply", "WireError"]


class WireError(Exception):
    """The peer sent something this client cannot frame, or closed mid-response."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    head: bytes  # status line and headers, lower-cased
    body: bytes  # de-chunked
    first_byte_at: float
    first_body_at: float | None
    done_at: float
    keep_alive: bool


_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


class _Parser:
    """Incremental response parser; ``feed`` returns True once the response is complete."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0  # bytes of buf already consumed
        self.state = _HEAD
        self.status = 0
        self.head = b""
        self.body_end = 0  # buffer offset where a Content-Length body ends
        self.body: list[bytes] = []
        self.keep_alive = True

    def feed(self, data: bytes) -> bool:
        self.buf += data
        if self.state == _HEAD and not self._parse_head():
            return False
        if self.state == _LENGTH:
            if len(self.buf) < self.body_end:
                return False
            self.body.append(bytes(self.buf[self.pos : self.body_end]))
            return True
        if self.state == _CHUNKED:
            return self._parse_chunks()
        return False  # _UNTIL_CLOSE: complete when the connection closes

    @property
    def has_body_bytes(self) -> bool:
        return self.state != _HEAD and len(self.buf) > self.pos

    def _parse_head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        self.head = bytes(self.buf[:end]).lower()
        self.pos = end + 4
        line, _, headers = self.head.partition(b"\r\n")
        try:
            self.status = int(line.split(None, 2)[1])
        except (IndexError, ValueError) as exc:
            raise WireError(f"bad status line {line[:80]!r}") from exc
        self.keep_alive = b"connection: close" not in headers and not line.startswith(b"http/1.0")
        if b"transfer-encoding: chunked" in headers:
            self.state = _CHUNKED
            return True
        at = headers.find(b"content-length:")
        if at < 0:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False
            return True
        stop = headers.find(b"\r\n", at)
        self.body_end = self.pos + int(headers[at + 15 : stop if stop >= 0 else None])
        self.state = _LENGTH
        return True

    def _parse_chunks(self) -> bool:
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", self.pos)
            if eol < 0:
                return False
            size = int(bytes(buf[self.pos : eol]).split(b";", 1)[0], 16)
            if size == 0:
                # Last chunk: an empty line, or trailers ending in an empty line.
                if buf[eol + 2 : eol + 4] == b"\r\n":
                    return True
                return buf.find(b"\r\n\r\n", eol) >= 0
            start = eol + 2
            if len(buf) < start + size + 2:
                return False
            self.body.append(bytes(buf[start : start + size]))
            self.pos = start + size + 2

    def close_body(self) -> bytes:
        if self.state == _UNTIL_CLOSE:
            return bytes(self.buf[self.pos :])
        return b"".join(self.body)


class Connection(asyncio.Protocol):
    """One client connection. Create with ``loop.create_connection(Connection, host, port)``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = _Parser()
        self._waiter: asyncio.Future[Reply] | None = None
        self._first_byte_at = 0.0
        self._first_body_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes) -> asyncio.Future[Reply]:
        """Write one pre-encoded request; the future resolves with its reply."""
        if self.transport is None or self.closed:
            raise WireError("connection is closed")
        self._parser = _Parser()
        self._first_byte_at = 0.0
        self._first_body_at = None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self._first_byte_at:
            self._first_byte_at = now
        parser = self._parser
        try:
            done = parser.feed(data)
        except (WireError, ValueError) as exc:
            self._fail(WireError(f"unparseable response: {exc}"))
            return
        if self._first_body_at is None and parser.has_body_bytes:
            self._first_body_at = now
        if done:
            self._resolve(parser.close_body(), now, parser.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self._parser
        if parser.state == _UNTIL_CLOSE and self._waiter is not None:
            self._resolve(parser.close_body(), time.perf_counter(), keep_alive=False)
        else:
            self._fail(WireError(f"connection closed mid-response ({exc!r})"))

    def close(self) -> None:
        """Close an idle connection politely (FIN, not RST)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _resolve(self, body: bytes, now: float, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        parser = self._parser
        waiter.set_result(
            Reply(
                status=parser.status,
                head=parser.head,
                body=body,
                first_byte_at=self._first_byte_at,
                first_body_at=self._first_body_at,
                done_at=now,
                keep_alive=keep_alive,
            )
        )

    def _fail(self, exc: WireError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()
