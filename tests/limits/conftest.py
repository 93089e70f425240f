"""Hypothesis profiles for the pure-core property tests.

``default`` is Hypothesis's own (100 examples, 200 ms deadline): fast enough to run on every
save. ``ci`` drops the deadline (shared CI runners stall; a slow example is not a failure of a
pure function), derandomises so a red build is reproducible from the log, and writes no example
database. Select it with ``HYPOTHESIS_PROFILE=ci``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
