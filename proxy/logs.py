"""Logging: one JSON object per line (or plain text), secrets scrubbed, writes off the event loop.

:func:`configure_logging` is called once per process by ``proxy/server.py`` (never at import).
It installs on the root logger:

    LineHandler [RedactionFilter, JsonFormatter | TextFormatter]
        -> queue of lines -> LineWriter thread -> stderr

Rules
1. No secret is ever written. :class:`RedactionFilter` runs on every record before it is
   formatted and replaces with ``[REDACTED]`` anything matching ``sk-[A-Za-z0-9_-]{8,}`` (user
   keys ``sk-sp-...``, OpenAI and Anthropic keys) and the configured admin token and upstream
   keys, wherever it is: the message and its arguments (the message is rendered first, so an
   object whose ``repr`` holds a key is caught too), every ``extra`` value (nested dicts and
   lists included), the traceback and the stack.
2. ``log_format = "json"`` (the default): ``{"ts", "level", "logger", "msg", "pid", ...extra,
   "exc"?}`` on one line, ``ts`` in RFC 3339 UTC with milliseconds. ``"text"``: a classic line
   with the extra fields appended as ``key=value``.
3. The event loop never blocks on a log write: records are formatted in the calling thread and
   written by one writer thread, a batch of lines per write, so a slow stderr pipe cannot stall
   requests. Lines queued when the process exits are written by ``LogSetup.close``.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any, Literal

import orjson

from proxy.settings import Settings

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "LineHandler",
    "LineWriter",
    "LogSetup",
    "RedactionFilter",
    "TextFormatter",
    "configure_logging",
    "secrets_of",
]

REDACTED = "[REDACTED]"
KEY_PATTERN = r"sk-[A-Za-z0-9_-]{8,}"

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
_TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def secrets_of(settings: Settings) -> list[str]:
    """The configured secrets: the admin token and every upstream's key (empty ones skipped)."""
    values = [settings.admin_token.get_secret_value()]
    values += [upstream.api_key.get_secret_value() for upstream in settings.upstreams.values()]
    return [value for value in values if value]


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order they were given."""
    fields = record.__dict__
    return {key: fields[key] for key in fields if key not in _STANDARD_ATTRS}


class RedactionFilter(logging.Filter):
    """Scrubs keys and configured secrets from every record (rule 1). Never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        literals = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join([*map(re.escape, literals), KEY_PATTERN]))
        self._search = self._pattern.search

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED]``."""
        return self._pattern.sub(REDACTED, text) if self._search(text) else text

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub_value(v) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> Literal[True]:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # bad %-arguments: keep the template
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg, record.args = self.scrub(message), None
        fields, search = record.__dict__, self._search
        for key in [key for key in fields if key not in _STANDARD_ATTRS]:
            value = fields[key]
            if isinstance(value, str):  # the common case, inlined: most fields hold no secret
                if search(value):
                    fields[key] = self._pattern.sub(REDACTED, value)
            elif isinstance(value, dict | list | tuple):
                fields[key] = self._scrub_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def _rfc3339(created: float) -> str:
    at = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return at.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (rule 2)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in extra_fields(record).items():
            payload.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return orjson.dumps(payload, default=str).decode()


class TextFormatter(logging.Formatter):
    """A classic text line, the extra fields appended as ``key=value`` (rule 2)."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in extra_fields(record).items() if v is not None)
        return f"{line} {fields}" if fields else line


class LineWriter:
    """The thread that writes formatted lines to the stream (rule 3). It wakes every
    ``interval_s`` and writes what was queued meanwhile in one go: a line costs its caller a
    queue append, never a thread wake-up."""

    def __init__(self, stream: IO[str], interval_s: float = 0.05) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def put(self, line: str) -> None:
        """Queue one line; never blocks."""
        self._lines.put_nowait(line)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then end the thread."""
        self._stopping.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(self._interval_s)
            lines = []
            while not self._lines.empty():
                lines.append(self._lines.get_nowait())
            if lines:
                self._write("\n".join(lines) + "\n")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nowhere left to say so
            pass


class LineHandler(logging.Handler):
    """Formats on the caller's thread and hands the line to a :class:`LineWriter`."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.put(self.format(record))
        except Exception:  # logging's contract: a handler reports its failure, never raises it
            self.handleError(record)


class LogSetup:
    """What :func:`configure_logging` installed; :meth:`close` flushes and restores the root."""

    def __init__(self, handler: logging.Handler, writer: LineWriter) -> None:
        root = logging.getLogger()
        self._previous = (root.level, list(root.handlers))
        self.handler, self._writer = handler, writer
        root.handlers = [handler]

    def close(self) -> None:
        """Write what is queued, stop the writer thread, put the previous handlers back."""
        self._writer.stop()
        root = logging.getLogger()
        level, handlers = self._previous
        root.setLevel(level)
        root.handlers = handlers


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> LogSetup:
    """Install the process's logging (module docstring) at ``settings.log_level``, writing to
    ``stream`` (default stderr). Raises ``ValueError`` for an unknown level name."""
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"log_level: unknown level {settings.log_level!r}")
    writer = LineWriter(stream or sys.stderr)
    handler = LineHandler(writer)
    handler.addFilter(RedactionFilter(secrets_of(settings)))
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    setup = LogSetup(handler, writer)
    logging.getLogger().setLevel(level)
    writer.start()
    return setup
