"""``FileSpool``: the durable local overflow for ledger rows the database could not take.

SPEC §8 inv. 3: during a database outage rows wait in memory, then here, and are written after
recovery. The ledger recorder is the only writer; one spool file belongs to one process.

Format: JSON Lines, one ``LedgerEntry`` per line, ``{"v": 1, ...}``; times as ISO 8601 with their
UTC offset, tokens as a ``usage`` object. Decoding gives back an equal entry (exact round trip).

Rules
1. ``append`` writes all its lines to an ``O_APPEND`` descriptor and ``fsync``s before it
   returns: rows the caller drops from memory afterwards are on disk. If the write fails, the
   file is truncated back to its previous length (no torn line stays behind) and the ``OSError``
   propagates; the caller keeps the rows.
2. A crash in the middle of an append can leave a torn last line (no trailing newline). ``read``
   skips it and keeps the rest; opening the spool cuts it off (or, if it is a complete record that
   only lacks its newline, completes it), so later appends start on a fresh line.
3. A damaged line in the middle (disk damage, hand edits) is logged with its line number and
   skipped; ``clear`` then moves the file aside to ``<name>.corrupt.<n>`` instead of truncating
   it, so an operator can still inspect it.
4. ``read`` returns each ``request_id`` once (first occurrence): replays are idempotent anyway,
   this only keeps batches free of duplicates.
5. ``clear`` is atomic: one ``ftruncate`` (or one ``rename``), then ``fsync``.
6. ``len()`` is the number of complete lines, counted at open and kept up to date, so it never
   touches the disk. Methods are synchronous; async callers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from limits.ports import LedgerEntry
from limits.usage import Usage

__all__ = ["FileSpool", "decode_line", "encode_line"]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_T = TypeVar("_T")


class FileSpool:
    """A ``limits.ports.Spool`` in a JSON Lines file at ``path`` (created on first append)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._corrupt_lines = 0
        self._rows = self._recover()

    def __len__(self) -> int:
        return self._rows

    def append(self, entries: Sequence[LedgerEntry]) -> None:
        """Append ``entries`` durably (rule 1). Raises ``OSError``; the file is then unchanged."""
        if not entries:
            return
        data = b"".join(encode_line(entry) for entry in entries)
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)
        self._rows += len(entries)

    def read(self) -> list[LedgerEntry]:
        """Every readable row, oldest first, each ``request_id`` once (rules 2-4)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        entries: dict[str, LedgerEntry] = {}
        self._corrupt_lines = 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = decode_line(line)
            except (ValueError, TypeError, KeyError) as exc:
                self._skip(number, torn=number == len(lines), error=exc)
                continue
            entries.setdefault(entry.request_id, entry)
        return list(entries.values())

    def clear(self) -> None:
        """Empty the spool atomically (rule 5), or move a damaged file aside (rule 3)."""
        if self._corrupt_lines and self.path.exists():
            aside = _free_name(self.path)
            os.replace(self.path, aside)
            _fsync_dir(self.path.parent)
            logger.error("spool had damaged lines; kept the old file as %s", aside)
        else:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, 0)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self._rows = 0
        self._corrupt_lines = 0

    def _skip(self, number: int, *, torn: bool, error: Exception) -> None:
        if torn:
            logger.warning(
                "spool %s: skipped a torn last line (%s)", self.path, type(error).__name__
            )
            return
        self._corrupt_lines += 1
        logger.error("spool %s: line %d is damaged (%s); skipped", self.path, number, error)

    def _recover(self) -> int:
        """Count the complete lines; cut or complete a torn last line (rule 2)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        tail = data[data.rfind(b"\n") + 1 :]
        if not tail:
            return data.count(b"\n")
        complete = _decodes(tail)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            if complete:
                _write_all(fd, b"\n")  # a whole record that only lacks its newline: keep it
            else:
                os.ftruncate(fd, len(data) - len(tail))
                logger.warning("spool %s: cut a torn last line of %d bytes", self.path, len(tail))
            os.fsync(fd)
        finally:
            os.close(fd)
        return data.count(b"\n") + (1 if complete else 0)


def encode_line(entry: LedgerEntry) -> bytes:
    """One spool line (JSON and a newline) for ``entry``."""
    record = {
        "v": _FORMAT_VERSION,
        "request_id": entry.request_id,
        "user_id": entry.user_id,
        "model": entry.model,
        "upstream": entry.upstream,
        "endpoint": entry.endpoint,
        "usage": dataclasses.asdict(entry.usage),
        "cost_micros": entry.cost_micros,
        "estimated": entry.estimated,
        "started_at": entry.started_at.isoformat(),
        "charged_at": entry.charged_at.isoformat(),
    }
    return orjson.dumps(record) + b"\n"


def decode_line(line: bytes) -> LedgerEntry:
    """The entry of one spool line (``encode_line``'s inverse).

    Raises ``ValueError``/``TypeError``/``KeyError`` when the line is not a v1 record.
    """
    raw = orjson.loads(line)
    if not isinstance(raw, dict) or raw.get("v") != _FORMAT_VERSION:
        raise ValueError("not a spool record of a known version")
    usage = _field(raw, "usage", dict)
    return LedgerEntry(
        request_id=_field(raw, "request_id", str),
        user_id=_field(raw, "user_id", int),
        model=_field(raw, "model", str),
        upstream=_field(raw, "upstream", str),
        endpoint=_field(raw, "endpoint", str),
        usage=Usage(**{name: _field(usage, name, int) for name in usage}),
        cost_micros=_field(raw, "cost_micros", int),
        estimated=_field(raw, "estimated", bool),
        started_at=datetime.fromisoformat(_field(raw, "started_at", str)),
        charged_at=datetime.fromisoformat(_field(raw, "charged_at", str)),
    )


def _field(raw: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = raw[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {name!r} is not {kind.__name__}")
    return value


def _decodes(line: bytes) -> bool:
    try:
        decode_line(line)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed directory entry durable (best effort: not every OS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _free_name(path: Path) -> Path:
    number = 1
    while (candidate := path.with_name(f"{path.name}.corrupt.{number}")).exists():
        number += 1
    return candidate
