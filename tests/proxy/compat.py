"""Shared set-up of the compatibility tests (``test_compat_*.py``, ``test_anthropic*.py``,
``test_passthrough.py``): a proxy with an OpenAI-style and an Anthropic-style upstream (both
the one fake, which speaks both), config-override prices, and the expected charge of each API
for the fake's token counts.

Every expected charge is computed twice, independently: from the app's ``PriceTable`` and the
usage the fake reports (:func:`expected_micros`), and as a literal worked out by hand from the
override prices below (``*_CALL_MICROS``), so a test cannot pass by repeating a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from limits import PriceTable, Usage, cost_micros
from limits.store.prices import load_price_table
from proxy.app import price_overrides
from proxy.settings import Settings
from tests.proxy.conftest import MODELS, TEST_PRICES, Proxy, StartProxy
from tests.proxy.fake_upstream import FakeUpstream

ANTHROPIC_KEY = "sk-ant-upstream-secret"
# USD per million tokens = micro-dollars per token.
PRICES: dict[str, dict[str, str]] = {
    **TEST_PRICES,  # test-model: input 1, output 2, cache_read 0.5
    "claude-test": {"input": "3", "output": "15", "cache_read": "0.3", "cache_write": "3.75"},
    "embed-test": {"input": "0.13", "output": "0"},
    "cheap": {"input": "10", "output": "10"},  # a client-side name renamed to gpt-4o-mini
}
OPENAI_MODELS = [*MODELS, "embed-test"]

# The fake reports 100 prompt tokens (20 of them cached), 50 completion tokens (10 of them
# reasoning): 80 * 1 + 20 * 0.5 + 50 * 2 (reasoning is inside the 50, never added again).
TEST_MODEL_CALL_MICROS = 190
# Anthropic: 100 uncached input, 30 cache-write, 20 cache-read, 50 output tokens:
# 100 * 3 + 30 * 3.75 + 20 * 0.3 + 50 * 15 = 1168.5, rounded up once.
CLAUDE_CALL_MICROS = 1169
# Embeddings: 100 prompt tokens * 0.13.
EMBED_CALL_MICROS = 13


def compat_price_table() -> PriceTable:
    """litellm's map under :data:`PRICES`."""
    return load_price_table(price_overrides(Settings(prices=PRICES)))


def anthropic_upstream(fake: FakeUpstream, **over: Any) -> dict[str, Any]:
    """The config of an Anthropic-style upstream on ``fake`` (its origin as ``base_url``)."""
    settings = {
        "provider": "anthropic",
        "base_url": fake.origin,
        "api_key": ANTHROPIC_KEY,
        "models": ["claude-*"],
    }
    return settings | over


async def start_compat(start_proxy: StartProxy, upstream: FakeUpstream, **over: Any) -> Proxy:
    """A proxy with upstreams ``openai`` (OpenAI-style) and ``anthropic`` (Anthropic-style),
    both on the fake, and :data:`PRICES`."""
    upstreams = {"openai": {"models": OPENAI_MODELS}, "anthropic": anthropic_upstream(upstream)}
    extra: dict[str, dict[str, Any]] = over.pop("upstreams", {})
    merged = {name: upstreams.get(name, {}) | extra.get(name, {}) for name in upstreams | extra}
    return await start_proxy(prices=PRICES, upstreams=merged, **over)


def origin(proxy: Proxy) -> str:
    """The proxy's origin: the Anthropic SDK's ``base_url``."""
    return str(proxy.client.make_url("/")).rstrip("/")


def openai_usage(fake: FakeUpstream) -> Usage:
    """What chat, legacy completions and the Responses API charge for the fake's counts."""
    return Usage(
        input_tokens=fake.prompt_tokens - fake.cached_tokens,
        output_tokens=fake.completion_tokens,
        cache_read_tokens=fake.cached_tokens,
        reasoning_tokens=fake.reasoning_tokens,
    )


def anthropic_usage(fake: FakeUpstream) -> Usage:
    """What ``/v1/messages`` charges for the fake's counts."""
    return Usage(
        input_tokens=fake.prompt_tokens,
        output_tokens=fake.completion_tokens,
        cache_read_tokens=fake.cached_tokens,
        cache_write_tokens=fake.cache_write_tokens,
    )


def expected_micros(prices: PriceTable, model: str, usage: Usage) -> int:
    price = prices.find(model)
    assert price is not None
    return cost_micros(usage, price)


TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def tokens_of(row: dict[str, Any]) -> Usage:
    """A ledger row's token counts as a ``Usage``."""
    return Usage(**{name: row[name] for name in TOKEN_COLUMNS})


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds (polling), or fail."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true in time")
