"""Ledger request ids: one per proxied call, unique because the ledger is unique by id.

Rules
1. A sane client ``x-request-id`` (1-64 of ``A-Z a-z 0-9 . _ : -``) is kept as the prefix, with
   a unique suffix: clients reuse their ids across retries, and each attempt is its own call.
2. Otherwise the id is 32 hex characters.
3. Uniqueness without a system call per request: a random 64-bit prefix drawn once per process
   (so processes and restarts never collide in practice) and a counter.
"""

from __future__ import annotations

import itertools
import re
import secrets

__all__ = ["RequestIds"]

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIds:
    """Makes ledger request ids (see the module rules)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def new(self, supplied: str | None) -> str:
        """A fresh id; ``supplied`` is the client's ``x-request-id`` header, if any."""
        if supplied and _SANE_REQUEST_ID.fullmatch(supplied):
            return f"{supplied}-{self._prefix}{next(self._counter):x}"
        return f"{self._prefix}{next(self._counter):016x}"
