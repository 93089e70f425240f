"""HTTP/1.1 over a plain blocking socket, for requests no client library would send: any
method, any request target (absolute-form, ``//host``, dot segments), raw header bytes.

Used from a worker thread (``asyncio.to_thread``) while the proxy serves on the event loop.
Every call is bounded by ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class RawAnswer:
    status: int  # 0: the connection closed without a status line
    body: bytes

    def error_code(self) -> object:
        try:
            payload = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None
        error = payload.get("error") if isinstance(payload, dict) else None
        return error.get("code") if isinstance(error, dict) else None


def request(
    port: int | None,
    head: bytes,
    body: bytes = b"",
    *,
    timeout_s: float = 10.0,
) -> RawAnswer:
    """Send ``head`` (request line and header lines, without the blank line), a
    ``Content-Length`` and ``Connection: close``, then ``body``; read the whole answer."""
    assert port is not None, "the server is not listening"
    framing = b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        # the server may answer (400/413) and close before reading everything
        with contextlib.suppress(OSError):
            sock.sendall(head.rstrip(b"\r\n") + b"\r\n" + framing + body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data.startswith(b"HTTP/1."):
        return RawAnswer(0, data)
    status_line, _, rest = data.partition(b"\r\n")
    _, _, body_part = rest.partition(b"\r\n\r\n")
    return RawAnswer(int(status_line.split()[1]), body_part)
