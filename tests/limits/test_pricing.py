"""limits.pricing: prices from config and litellm's map, exact cost, lookup order (SPEC §3)."""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limits.errors import UnknownPrice
from limits.pricing import (
    Price,
    PriceTable,
    PriceTier,
    cost_micros,
    price_from_litellm,
    price_from_usd_per_mtok,
)
from limits.usage import Usage

# ---------------------------------------------------------------- building prices


def test_price_from_usd_per_mtok_is_exact() -> None:
    price = price_from_usd_per_mtok(
        Decimal("2.50"), Decimal("10"), Decimal("1.25"), Decimal("3.125"), max_output_tokens=16
    )
    # $2.50 per million tokens == 2.5e-6 USD per token == 2_500_000 picodollars per token.
    assert price == Price(2_500_000, 10_000_000, 1_250_000, 3_125_000, 16)


def test_price_from_usd_per_mtok_cache_prices_default_to_input() -> None:
    price = price_from_usd_per_mtok(Decimal("0.5"), Decimal("1.5"))
    assert (price.cache_read_pico, price.cache_write_pico) == (500_000, 500_000)
    assert price.max_output_tokens is None
    assert price.tiers == ()


def test_price_from_usd_per_mtok_rounds_sub_picodollars_up() -> None:
    # $0.0000001 per million tokens is a tenth of a picodollar per token: never free.
    assert price_from_usd_per_mtok(Decimal("0.0000001"), Decimal(0)).input_pico == 1


@pytest.mark.parametrize("field", ["input", "output", "cache_read", "cache_write"])
@pytest.mark.parametrize("bad", ["-1", "NaN", "Infinity", "-Infinity"])
def test_price_from_usd_per_mtok_rejects_impossible_prices(field: str, bad: str) -> None:
    value, one = Decimal(bad), Decimal(1)
    with pytest.raises(ValueError, match=field):
        price_from_usd_per_mtok(
            input=value if field == "input" else one,
            output=value if field == "output" else one,
            cache_read=value if field == "cache_read" else None,
            cache_write=value if field == "cache_write" else None,
        )


def test_price_from_litellm_reads_floats_through_their_decimal_text() -> None:
    entry = {
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-06,
        "cache_creation_input_token_cost": 3.75e-06,
        "max_output_tokens": 16384,
        "litellm_provider": "openai",
    }
    assert price_from_litellm(entry) == Price(2_500_000, 10_000_000, 1_250_000, 3_750_000, 16384)


def test_price_from_litellm_missing_cache_prices_fall_back_to_input() -> None:
    price = price_from_litellm({"input_cost_per_token": 3e-07, "output_cost_per_token": 6e-07})
    assert price == Price(300_000, 600_000, 300_000, 300_000)


def test_price_from_litellm_rounds_a_sub_picodollar_price_up() -> None:
    # A real entry of the map: 9.499999999999999e-07 USD is 949999.9999999999 pUSD.
    price = price_from_litellm({"input_cost_per_token": 9.499999999999999e-07})
    assert price is not None
    assert price.input_pico == 950_000


@pytest.mark.parametrize(
    "entry",
    [
        {},
        {"mode": "image_generation", "output_cost_per_image": 0.04},
        {"input_cost_per_token": None, "output_cost_per_token": None},
        {"input_cost_per_token": "2.5e-06", "output_cost_per_token": True},
        {"input_cost_per_token": -1e-06},
        {"input_cost_per_token": float("nan"), "output_cost_per_token": float("inf")},
    ],
)
def test_price_from_litellm_without_a_usable_token_price(entry: dict[str, Any]) -> None:
    assert price_from_litellm(entry) is None


def test_price_from_litellm_with_one_side_only() -> None:
    embedding = price_from_litellm({"input_cost_per_token": 2e-08})
    assert embedding == Price(20_000, 0, 20_000, 20_000)
    output_only = price_from_litellm({"output_cost_per_token": 1e-06})
    assert output_only == Price(0, 1_000_000, 0, 0)


def test_price_from_litellm_ignores_unusable_cache_prices() -> None:
    entry = {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06,
        "cache_read_input_token_cost": -1.0,
        "cache_creation_input_token_cost": "free",
    }
    assert price_from_litellm(entry) == Price(1_000_000, 2_000_000, 1_000_000, 1_000_000)


@pytest.mark.parametrize(
    ("max_output", "expected"),
    [(8192, 8192), (0, None), (-5, None), (True, None), ("8192", None), (8192.0, None)],
)
def test_price_from_litellm_max_output_tokens(max_output: object, expected: int | None) -> None:
    entry = {"input_cost_per_token": 1e-06, "max_output_tokens": max_output}
    price = price_from_litellm(entry)
    assert price is not None
    assert price.max_output_tokens == expected


# ---------------------------------------------------------------- long-context tiers

GEMINI_PRO_LIKE: dict[str, Any] = {
    "litellm_provider": "gemini",
    "input_cost_per_token": 1.25e-06,
    "output_cost_per_token": 1e-05,
    "cache_read_input_token_cost": 1.25e-07,
    "input_cost_per_token_above_200k_tokens": 2.5e-06,
    "output_cost_per_token_above_200k_tokens": 1.5e-05,
    "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
    # Service tiers and batch rates: this proxy does not know a call used them.
    "input_cost_per_token_above_200k_tokens_priority": 9e-06,
    "input_cost_per_token_above_200k_tokens_batches": 1e-09,
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 9e-06,
    "cache_creation_input_token_cost_above_1hr": 9e-06,
}


def test_tiers_from_litellm() -> None:
    price = price_from_litellm(GEMINI_PRO_LIKE)
    assert price is not None
    assert price.tiers == (
        # No cache-write price at either level: falls back to the tier's input price.
        PriceTier(200_000, 2_500_000, 15_000_000, 250_000, 2_500_000),
    )


def test_tiers_stack_and_fall_back_to_the_tier_below() -> None:
    entry = {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06,
        "cache_creation_input_token_cost": 1.5e-06,
        "input_cost_per_token_above_128k_tokens": 3e-06,
        "cache_read_input_token_cost_above_128k_tokens": 5e-07,
        "output_cost_per_token_above_256000_tokens": 8e-06,  # unabbreviated spelling
        "input_cost_per_token_above_300k_tokens": "n/a",  # unusable: no tier at 300k
    }
    price = price_from_litellm(entry)
    assert price is not None
    assert price.tiers == (
        PriceTier(128_000, 3_000_000, 2_000_000, 500_000, 1_500_000),
        PriceTier(256_000, 3_000_000, 8_000_000, 500_000, 1_500_000),
    )


def test_xai_thresholds_are_inclusive() -> None:
    entry = {
        "litellm_provider": "xai",
        "input_cost_per_token": 2e-07,
        "input_cost_per_token_above_128k_tokens": 4e-07,
    }
    price = price_from_litellm(entry)
    assert price is not None
    assert price.tiers[0].above_tokens == 127_999
    at_threshold = Usage(input_tokens=128_000)
    assert cost_micros(at_threshold, price) == 128_000 * 400_000 // 1_000_000


def test_cost_uses_the_tier_the_whole_prompt_exceeds() -> None:
    price = price_from_litellm(GEMINI_PRO_LIKE)
    assert price is not None
    at_threshold = Usage(input_tokens=150_000, cache_read_tokens=50_000, output_tokens=1000)
    assert cost_micros(at_threshold, price) == ceil_micros(
        150_000 * 1_250_000 + 50_000 * 125_000 + 1000 * 10_000_000
    )
    # One more cached token crosses 200k: every token is billed at the tier's rates.
    above = Usage(input_tokens=150_000, cache_read_tokens=50_001, output_tokens=1000)
    assert cost_micros(above, price) == ceil_micros(
        150_000 * 2_500_000 + 50_001 * 250_000 + 1000 * 15_000_000
    )
    # Cache writes count toward the prompt too.
    writes = Usage(input_tokens=200_000, cache_write_tokens=1)
    assert cost_micros(writes, price) == ceil_micros(200_001 * 2_500_000)


def test_highest_exceeded_tier_wins() -> None:
    price = Price(
        1,
        1,
        1,
        1,
        tiers=(PriceTier(10, 1_000_000, 0, 0, 0), PriceTier(20, 2_000_000, 0, 0, 0)),
    )
    assert cost_micros(Usage(input_tokens=10), price) == 1  # 10 pico, rounded up
    assert cost_micros(Usage(input_tokens=11), price) == 11
    assert cost_micros(Usage(input_tokens=20), price) == 20
    assert cost_micros(Usage(input_tokens=21), price) == 42


# ---------------------------------------------------------------- cost


def ceil_micros(pico: int) -> int:
    return -(-pico // 1_000_000)


def test_zero_usage_costs_nothing() -> None:
    assert cost_micros(Usage(), Price(2_500_000, 10_000_000, 1_250_000, 3_125_000)) == 0


def test_cost_example() -> None:
    gpt_4o = price_from_usd_per_mtok(Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000)
    # 1000 * 2.5 + 500 * 10 + 2000 * 1.25 micro-dollars.
    assert cost_micros(usage, gpt_4o) == 2500 + 5000 + 2500


def test_a_small_call_is_never_free() -> None:
    cheap = price_from_usd_per_mtok(Decimal("0.02"), Decimal(0))
    assert cost_micros(Usage(input_tokens=1), cheap) == 1


def test_rounding_happens_once_per_call_not_per_category() -> None:
    price = Price(400_000, 400_000, 400_000, 400_000)  # 0.4 micro-dollars per token
    usage = Usage(input_tokens=1, output_tokens=1, cache_read_tokens=1, cache_write_tokens=1)
    assert cost_micros(usage, price) == 2  # ceil(1.6), not 4 * ceil(0.4)


pico_prices = st.integers(min_value=0, max_value=10**9)  # up to $1,000 per million tokens
tokens = st.integers(min_value=0, max_value=10**7)


@st.composite
def prices(draw: st.DrawFn) -> Price:
    """Random prices, with tiers whose rates never fall below the level beneath them: then
    cost is monotone in every token category. (litellm's map holds six exceptions, Vertex
    Gemini Pro entries whose tier cache-write rate is below the base one, which falls back to
    the input rate; litellm prices them the same way, see test_pricing_litellm.py.)"""
    base = [draw(pico_prices) for _ in range(4)]
    rates, tiers, threshold = base, [], 0
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        threshold += draw(st.integers(min_value=1, max_value=10**6))
        rates = [rate + draw(pico_prices) for rate in rates]
        tiers.append(PriceTier(threshold, rates[0], rates[1], rates[2], rates[3]))
    return Price(base[0], base[1], base[2], base[3], tiers=tuple(tiers))


usages = st.builds(Usage, tokens, tokens, tokens, tokens)


def exact_pico(usage: Usage, price: Price) -> int:
    """The un-rounded cost, restated independently of the module."""
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    rates = [price.input_pico, price.output_pico, price.cache_read_pico, price.cache_write_pico]
    for tier in price.tiers:
        if prompt > tier.above_tokens:
            rates = [tier.input_pico, tier.output_pico, tier.cache_read_pico, tier.cache_write_pico]
    counts = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    ]
    return sum(n * r for n, r in zip(counts, rates, strict=True))


@given(usages, prices())
def test_cost_is_the_exact_sum_rounded_up_once(usage: Usage, price: Price) -> None:
    micros = cost_micros(usage, price)
    exact = exact_pico(usage, price)
    assert micros * 1_000_000 >= exact
    assert micros * 1_000_000 < exact + 1_000_000


@given(
    usages,
    prices(),
    st.sampled_from(["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]),
    st.integers(min_value=1, max_value=10**6),
)
def test_cost_is_monotone_in_every_token_category(
    usage: Usage, price: Price, category: str, extra: int
) -> None:
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }
    counts[category] += extra
    assert cost_micros(Usage(**counts), price) >= cost_micros(usage, price)


@given(prices())
def test_zero_usage_is_free_at_any_price(price: Price) -> None:
    assert cost_micros(Usage(), price) == 0


def test_usage_rejects_negative_counts() -> None:
    for field in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        with pytest.raises(ValueError, match=field):
            Usage(**{field: -1})


def test_usage_total_excludes_reasoning_which_is_inside_output() -> None:
    usage = Usage(10, 20, 30, 40, reasoning_tokens=15)
    assert usage.total_tokens == 100


# ---------------------------------------------------------------- lookup order


def p(n: int) -> Price:
    """A distinct, recognisable price."""
    return Price(n, n, n, n)


@pytest.mark.parametrize(
    ("present", "winner"),
    [
        # Every combination that matters of the four sources, strongest first (SPEC §3).
        ({"ovr_reported", "ovr_requested", "lit_reported", "lit_requested"}, "ovr_reported"),
        ({"ovr_requested", "lit_reported", "lit_requested"}, "ovr_requested"),
        ({"lit_reported", "lit_requested"}, "lit_reported"),
        ({"lit_requested"}, "lit_requested"),
        ({"ovr_reported", "lit_reported"}, "ovr_reported"),
        ({"ovr_requested", "lit_reported"}, "ovr_requested"),  # an override beats litellm
        ({"ovr_reported", "ovr_requested"}, "ovr_reported"),
    ],
)
def test_lookup_order(present: set[str], winner: str) -> None:
    sources = {"ovr_reported": 1, "ovr_requested": 2, "lit_reported": 3, "lit_requested": 4}
    overrides = {
        name: p(sources[key])
        for key, name in (("ovr_reported", "gpt-x-reported"), ("ovr_requested", "gpt-x"))
        if key in present
    }
    catalog = {
        name: p(sources[key])
        for key, name in (("lit_reported", "gpt-x-reported"), ("lit_requested", "gpt-x"))
        if key in present
    }
    table = PriceTable(catalog, overrides)
    assert table.find("gpt-x", "gpt-x-reported") == p(sources[winner])


@given(st.sets(st.sampled_from(["ovr_rep", "ovr_req", "lit_rep", "lit_req", "alias_req"])))
def test_lookup_order_property(present: set[str]) -> None:
    """Whatever subset of sources knows a price, the first in SPEC §3 order wins."""
    order = ["ovr_rep", "ovr_req", "lit_rep", "lit_req", "alias_req"]
    overrides: dict[str, Price] = {}
    catalog: dict[str, Price] = {}
    if "ovr_rep" in present:
        overrides["m-2025-01-01"] = p(1)
    if "ovr_req" in present:
        overrides["acme/m"] = p(2)
    if "lit_rep" in present:
        catalog["m-2025-01-01"] = p(3)
    if "lit_req" in present:
        catalog["acme/m"] = p(4)
    if "alias_req" in present:
        catalog["m"] = p(5)
    expected = next((p(order.index(s) + 1) for s in order if s in present), None)
    assert PriceTable(catalog, overrides).find("acme/m", "m-2025-01-01") == expected


def test_exact_litellm_price_beats_an_override_for_an_alias() -> None:
    table = PriceTable({"gpt-4o-2024-08-06": p(1)}, {"gpt-4o": p(2)})
    assert table.find("gpt-4o-2024-08-06") == p(1)


@pytest.mark.parametrize(
    ("model", "known"),
    [
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
        ("openai/gpt-4o-2024-08-06", "openai/gpt-4o"),
        ("azure/eu/gpt-4o", "eu/gpt-4o"),
    ],
)
def test_aliases(model: str, known: str) -> None:
    assert PriceTable({known: p(7)}).find(model) == p(7)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o-mini",  # a different model, not an alias of gpt-4o
        "gpt-4o-0613",  # 4-digit snapshot suffixes are not stripped
        "my-gpt-4o",
        "azure/eu/gpt-4o",  # only the first provider segment is stripped
    ],
)
def test_not_aliases(model: str) -> None:
    assert PriceTable({"gpt-4o": p(7)}).find(model) is None


def test_alias_preferences() -> None:
    # The prefix-stripped name beats the undated one; an override beats litellm per alias.
    table = PriceTable({"gpt-4o-2024-08-06": p(1), "gpt-4o": p(2)})
    assert table.find("openai/gpt-4o-2024-08-06") == p(1)
    table = PriceTable({"gpt-4o": p(1)}, {"gpt-4o": p(2)})
    assert table.find("openai/gpt-4o") == p(2)
    # The reported model's aliases come before the requested model's.
    table = PriceTable({"gpt-4o": p(1), "gpt-4o-mini": p(2)})
    assert table.find("openai/gpt-4o", "openai/gpt-4o-mini") == p(2)


@pytest.mark.parametrize("reported", [None, "", "gpt-x"])
def test_no_distinct_reported_model(reported: str | None) -> None:
    assert PriceTable({"gpt-x": p(1)}).find("gpt-x", reported) == p(1)


def test_reported_model_unknown_falls_back_to_requested() -> None:
    assert PriceTable({"gpt-x": p(1)}).find("gpt-x", "gpt-x-secret-build") == p(1)


def test_unknown_model() -> None:
    table = PriceTable({"gpt-4o": p(1)})
    assert table.find("llama-9") is None
    assert "llama-9" not in table
    assert "gpt-4o" in table
    with pytest.raises(UnknownPrice) as info:
        table.lookup("llama-9", "llama-9-0001")
    assert info.value.model == "llama-9"


@pytest.mark.parametrize("model", ["my-model", "openai/gpt-4o", "qwen2.5-coder", "it's"])
def test_unknown_price_message_names_a_valid_config_key(model: str) -> None:
    message = str(UnknownPrice(model))
    match = re.search(r"\[prices\.(.+?)\] with", message)
    assert match is not None, message
    document = tomllib.loads(f"[prices.{match[1]}]\ninput = 1.0\noutput = 2.0\n")
    assert list(document["prices"]) == [model]
    assert 'unpriced_models = "allow"' in message


def test_lookup_returns_the_price() -> None:
    assert PriceTable({}, {"mine": p(3)}).lookup("mine") == p(3)


def test_results_are_cached_and_the_cache_is_bounded() -> None:
    catalog = {"gpt-4o": p(1)}
    table = PriceTable(catalog)
    assert table.find("openai/gpt-4o") == p(1)
    del catalog["gpt-4o"]  # the table holds the mapping it was given: a hit comes from cache
    assert table.find("openai/gpt-4o") == p(1)
    for i in range(10_000):  # client-chosen names, e.g. "gpt-<anything>" routed by a glob
        assert table.find(f"gpt-{i}") is None
    assert len(table._cache) <= 4096  # white-box: the memory bound itself


def test_from_litellm_skips_non_prices() -> None:
    table = PriceTable.from_litellm(
        {
            "sample_spec": {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0},
            "not-a-mapping": [1, 2],
            "dall-e-3": {"mode": "image_generation", "output_cost_per_image": 0.04},
            "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
        },
        overrides={"mine": p(9)},
    )
    assert "sample_spec" not in table
    assert "not-a-mapping" not in table
    assert "dall-e-3" not in table
    assert table.find("gpt-4o") == Price(2_500_000, 10_000_000, 2_500_000, 2_500_000)
    assert table.find("mine") == p(9)
