"""``Backoff``: capped doubling, reset on success."""

from __future__ import annotations

from limits.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_on_success() -> None:
    backoff = Backoff(initial_s=0.5, max_s=3.0)
    assert backoff.ready(0.0)
    assert [backoff.failed(10.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.retry_at == 13.0
    assert not backoff.ready(12.9)
    assert backoff.ready(13.0)
    backoff.succeeded()
    assert backoff.ready(0.0)
    assert backoff.failed(0.0) == 0.5


def test_a_very_long_outage_does_not_overflow() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    for _ in range(5_000):
        delay_s = backoff.failed(0.0)
    assert delay_s == 30.0
