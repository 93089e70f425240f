"""Capped exponential backoff for retrying a failed store write (pure: the caller passes time).

Rule: after the n-th consecutive failure the next attempt waits
``min(max_s, initial_s * 2 ** (n - 1))`` seconds; one success resets n to 0. Times are the
caller's monotonic seconds (the event loop's ``time()``), never wall-clock datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]

_MAX_EXPONENT = 30  # 2**30 * any sane initial_s is far above any max_s; avoids float overflow


@dataclass(slots=True)
class Backoff:
    initial_s: float
    max_s: float
    failures: int = 0
    retry_at: float = 0.0

    def ready(self, now: float) -> bool:
        """Whether an attempt may be made at ``now``."""
        return now >= self.retry_at

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the seconds until the next attempt."""
        self.failures += 1
        delay_s = min(self.max_s, self.initial_s * 2.0 ** min(self.failures - 1, _MAX_EXPONENT))
        self.retry_at = now + delay_s
        return delay_s

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0
