"""Prices per model and the cost of one call, in exact integer arithmetic (SPEC §3).

Algorithm
1. Each price is held as an integer number of **picodollars per token** (1e-12 USD). litellm's
   map gives USD per token as floats (``2.5e-06``); those are read through their shortest decimal
   text (``Decimal(repr(x))``), so ``2.5e-06`` is exactly 2_500_000 pUSD. A price that is not a
   whole number of picodollars (a few dozen entries of litellm's map, e.g.
   ``9.499999999999999e-07``) is rounded up: the error is below one picodollar per token, i.e.
   at most one micro-dollar per million tokens, always in the operator's favour. Config
   overrides give USD per million tokens, which is exactly ``1e6`` pUSD per token per dollar.
   Negative, NaN or infinite prices in litellm's map count as absent; in an override they are a
   ``ValueError``.
2. A call's cost is ``sum(tokens * price)`` in picodollars, rounded **up** to a whole
   micro-dollar once (``money.ceil_div``): a call is never free because it was small.
3. Lookup order (first hit wins): config override for the model the upstream reported, override
   for the requested model, litellm for the reported model, litellm for the requested model, then
   aliases of each (provider prefix stripped, dated snapshot or ``-latest`` suffix stripped; the
   reported model's aliases first, and for one alias an override beats litellm). Results are
   cached per (requested, reported) pair, so the hot path is one dict lookup; the cache is
   bounded, because clients choose the names.
4. A missing cache-read or cache-write price falls back to the input price (as litellm does:
   a provider that publishes no cache price bills cached tokens as ordinary input).
5. Long-context tiers, as litellm's ``*_above_<N>k_tokens`` keys: when a call's prompt (input +
   cache-read + cache-write tokens, litellm's ``prompt_tokens``) exceeds ``N`` tokens, *every*
   token of the call is priced at that tier's rates. A tier key that is absent falls back to the
   next lower tier's rate of the same category (cache rates finally to the tier's input rate).
   xAI bills the higher tier from the threshold itself (litellm: inclusive thresholds), which is
   stored as "above N - 1".
6. Not modelled (the entry's flat token prices apply): ``tiered_pricing`` range tables
   (dashscope), service tiers (``priority`` costs more than we charge, ``flex``/batch less),
   off-peak windows (litellm discounts them), 1-hour cache writes (cost more than the 5-minute
   rate we charge), per-request fees (web search), per-character or per-second prices. The
   differential test ``tests/limits/test_pricing_litellm.py`` checks everything else against
   litellm's own arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from limits.errors import UnknownPrice
from limits.money import ceil_div
from limits.usage import Usage

__all__ = [
    "Price",
    "PriceTable",
    "PriceTier",
    "cost_micros",
    "price_from_litellm",
    "price_from_usd_per_mtok",
]

PICO_PER_MICRO = 1_000_000
_PICO_PER_USD = Decimal(10) ** 12
_PICO_PER_USD_PER_MTOK = Decimal(10) ** 6

_DATED_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")

# litellm's standard long-context keys, e.g. "input_cost_per_token_above_200k_tokens". Keys with
# a further suffix (_priority, _flex, _batches) or a cache TTL ("..._1hr_above_200k_tokens") do
# not match: they price service tiers this proxy does not know a call used.
_TIER_KEY = re.compile(
    r"(?P<category>input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost)_above_(?P<count>\d+)(?P<k>k?)_tokens"
)
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})

_CACHE_MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Per-token prices (picodollars) that apply to the whole call when its prompt (input +
    cache-read + cache-write tokens) exceeds ``above_tokens``."""

    above_tokens: int
    input_pico: int
    output_pico: int
    cache_read_pico: int
    cache_write_pico: int


@dataclass(frozen=True, slots=True)
class Price:
    """Per-token prices in picodollars (1e-12 USD); ``max_output_tokens`` when known;
    ``tiers``: long-context prices, ascending by ``above_tokens`` (module rule 5)."""

    input_pico: int
    output_pico: int
    cache_read_pico: int
    cache_write_pico: int
    max_output_tokens: int | None = None
    tiers: tuple[PriceTier, ...] = ()


def _to_pico(value: Decimal, scale: Decimal) -> int:
    return int((value * scale).to_integral_value(rounding=ROUND_CEILING))


def price_from_usd_per_mtok(
    input: Decimal,
    output: Decimal,
    cache_read: Decimal | None = None,
    cache_write: Decimal | None = None,
    max_output_tokens: int | None = None,
) -> Price:
    """A price from USD per million tokens (the config's ``[prices."model"]`` unit).

    Raises ``ValueError`` when a price is negative, NaN or infinite.
    """
    for name, value in (
        ("input", input),
        ("output", output),
        ("cache_read", cache_read),
        ("cache_write", cache_write),
    ):
        if value is not None and (not value.is_finite() or value < 0):
            raise ValueError(f"{name}: a price must be a finite number >= 0, not {value}")
    input_pico = _to_pico(input, _PICO_PER_USD_PER_MTOK)
    return Price(
        input_pico=input_pico,
        output_pico=_to_pico(output, _PICO_PER_USD_PER_MTOK),
        cache_read_pico=input_pico
        if cache_read is None
        else _to_pico(cache_read, _PICO_PER_USD_PER_MTOK),
        cache_write_pico=input_pico
        if cache_write is None
        else _to_pico(cache_write, _PICO_PER_USD_PER_MTOK),
        max_output_tokens=max_output_tokens,
    )


def _pico_per_token(entry: Mapping[str, Any], key: str) -> int | None:
    """litellm's USD-per-token float under ``key`` in picodollars, or None when absent or not a
    usable price (bool, text, negative, NaN, infinite)."""
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    usd = Decimal(repr(value))
    if not usd.is_finite() or usd < 0:
        return None
    return _to_pico(usd, _PICO_PER_USD)


def _tiers_from_litellm(
    entry: Mapping[str, Any],
    input_pico: int,
    output_pico: int,
    cache_read: int | None,
    cache_write: int | None,
) -> tuple[PriceTier, ...]:
    """The long-context tiers of one litellm entry (module rule 5), ascending.

    The ``input_pico`` .. ``cache_write`` arguments are the base rates (cache rates None when
    the entry has none); each tier starts from the rates of the tier below it.
    """
    rates: dict[tuple[str, int], int] = {}
    for key in entry:
        match = _TIER_KEY.fullmatch(key)
        rate = None if match is None else _pico_per_token(entry, key)
        if match is not None and rate is not None:
            threshold = int(match["count"]) * (1000 if match["k"] else 1)
            rates[(match["category"], threshold)] = rate
    inclusive = entry.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS
    tiers = []
    for threshold in sorted({threshold for _category, threshold in rates}):
        input_pico = rates.get(("input_cost_per_token", threshold), input_pico)
        output_pico = rates.get(("output_cost_per_token", threshold), output_pico)
        cache_read = rates.get(("cache_read_input_token_cost", threshold), cache_read)
        cache_write = rates.get(("cache_creation_input_token_cost", threshold), cache_write)
        tiers.append(
            PriceTier(
                above_tokens=threshold - 1 if inclusive else threshold,
                input_pico=input_pico,
                output_pico=output_pico,
                cache_read_pico=input_pico if cache_read is None else cache_read,
                cache_write_pico=input_pico if cache_write is None else cache_write,
            )
        )
    return tuple(tiers)


def price_from_litellm(entry: Mapping[str, Any]) -> Price | None:
    """A price from one entry of litellm's model price map, or None if it has no token price."""
    input_pico = _pico_per_token(entry, "input_cost_per_token")
    output_pico = _pico_per_token(entry, "output_cost_per_token")
    if input_pico is None and output_pico is None:
        return None
    input_pico = input_pico or 0
    output_pico = output_pico or 0
    cache_read = _pico_per_token(entry, "cache_read_input_token_cost")
    cache_write = _pico_per_token(entry, "cache_creation_input_token_cost")
    max_output = entry.get("max_output_tokens")
    return Price(
        input_pico=input_pico,
        output_pico=output_pico,
        cache_read_pico=input_pico if cache_read is None else cache_read,
        cache_write_pico=input_pico if cache_write is None else cache_write,
        max_output_tokens=max_output
        if isinstance(max_output, int) and not isinstance(max_output, bool) and max_output > 0
        else None,
        tiers=_tiers_from_litellm(entry, input_pico, output_pico, cache_read, cache_write),
    )


def cost_micros(usage: Usage, price: Price) -> int:
    """The cost of one call in micro-dollars, rounded up once (see the module rules).

    The rates are the base ones, or those of the highest tier the prompt exceeds (rule 5).
    """
    rates: Price | PriceTier = price
    prompt_tokens = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    for tier in price.tiers:
        if prompt_tokens > tier.above_tokens:
            rates = tier
    pico = (
        usage.input_tokens * rates.input_pico
        + usage.output_tokens * rates.output_pico
        + usage.cache_read_tokens * rates.cache_read_pico
        + usage.cache_write_tokens * rates.cache_write_pico
    )
    return ceil_div(pico, PICO_PER_MICRO)


def _aliases(model: str) -> Iterator[str]:
    """Other names the same model is known by: without provider prefix, without dated suffix."""
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    for name in list(names):
        undated = _DATED_SUFFIX.sub("", name)
        if undated != name:
            names.append(undated)
    yield from names[1:]


class PriceTable:
    """Model name -> :class:`Price`, from config overrides over litellm's map."""

    def __init__(
        self,
        catalog: Mapping[str, Price],
        overrides: Mapping[str, Price] | None = None,
    ) -> None:
        self._catalog = catalog
        self._overrides = dict(overrides or {})
        self._cache: dict[tuple[str, str | None], Price | None] = {}

    @classmethod
    def from_litellm(
        cls, price_map: Mapping[str, Any], overrides: Mapping[str, Price] | None = None
    ) -> PriceTable:
        catalog: dict[str, Price] = {}
        for name, entry in price_map.items():
            if isinstance(entry, Mapping) and name != "sample_spec":
                price = price_from_litellm(entry)
                if price is not None:
                    catalog[name] = price
        return cls(catalog, overrides)

    def find(self, requested: str, reported: str | None = None) -> Price | None:
        """The price for a call, or None when no rule finds one (see module rule 3)."""
        key = (requested, reported)
        if key in self._cache:
            return self._cache[key]
        price = self._search(requested, reported)
        if len(self._cache) >= _CACHE_MAX_ENTRIES:
            # Clients choose model names ("gpt-<anything>" routes by glob): never let them grow
            # this without bound. Starting over costs one search per distinct pair.
            self._cache.clear()
        self._cache[key] = price
        return price

    def lookup(self, requested: str, reported: str | None = None) -> Price:
        """Like :meth:`find`, but raises :class:`UnknownPrice` naming the requested model."""
        price = self.find(requested, reported)
        if price is None:
            raise UnknownPrice(requested)
        return price

    def _search(self, requested: str, reported: str | None) -> Price | None:
        names = [reported, requested] if reported and reported != requested else [requested]
        for table in (self._overrides, self._catalog):
            for name in names:
                if name in table:
                    return table[name]
        for name in names:
            for alias in _aliases(name):
                for table in (self._overrides, self._catalog):
                    if alias in table:
                        return table[alias]
        return None

    def __contains__(self, model: str) -> bool:
        return self.find(model) is not None
