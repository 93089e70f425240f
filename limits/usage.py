"""Token usage of one call, normalised across APIs (SPEC §3).

Rule: the four categories are disjoint, so each token is priced exactly once.
``input_tokens`` are uncached input only; ``cache_read_tokens`` and ``cache_write_tokens`` are the
cached parts; ``output_tokens`` already include reasoning tokens (never added twice).
The per-API mapping into these categories lives in the proxy (``proxy/usage.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # informational: already inside output_tokens

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )
