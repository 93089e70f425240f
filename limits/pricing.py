"""Prices per model and the cost of one call, in exact integer arithmetic (SPEC §3).

Algorithm
1. Each price is held as an integer number of **picodollars per token** (1e-12 USD). litellm's
   map gives USD per token as floats (``2.5e-06``); those are read through their shortest decimal
   text (``Decimal(repr(x))``), so ``2.5e-06`` is exactly 2_500_000 pUSD. A price that is not a
   whole number of picodollars is rounded up (none in litellm's map today). Config overrides give
   USD per million tokens, which is exactly ``1e6`` pUSD per token per dollar.
2. A call's cost is ``sum(tokens * price)`` in picodollars, rounded **up** to a whole
   micro-dollar once (``money.ceil_div``): a call is never free because it was small.
3. Lookup order (first hit wins): config override for the model the upstream reported, override
   for the requested model, litellm for the reported model, litellm for the requested model, then
   aliases of each (provider prefix stripped, dated snapshot suffix stripped). Results are cached
   per (requested, reported) pair, so the hot path is one dict lookup.
4. A missing cache-read or cache-write price falls back to the input price.
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

__all__ = ["Price", "PriceTable", "cost_micros", "price_from_litellm", "price_from_usd_per_mtok"]

PICO_PER_MICRO = 1_000_000
_PICO_PER_USD = Decimal(10) ** 12
_PICO_PER_USD_PER_MTOK = Decimal(10) ** 6

_DATED_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")


@dataclass(frozen=True, slots=True)
class Price:
    """Per-token prices in picodollars (1e-12 USD); ``max_output_tokens`` when known."""

    input_pico: int
    output_pico: int
    cache_read_pico: int
    cache_write_pico: int
    max_output_tokens: int | None = None


def _to_pico(value: Decimal, scale: Decimal) -> int:
    return int((value * scale).to_integral_value(rounding=ROUND_CEILING))


def price_from_usd_per_mtok(
    input: Decimal,
    output: Decimal,
    cache_read: Decimal | None = None,
    cache_write: Decimal | None = None,
    max_output_tokens: int | None = None,
) -> Price:
    """A price from USD per million tokens (the config's ``[prices."model"]`` unit)."""
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


def _usd_per_token(entry: Mapping[str, Any], key: str) -> Decimal | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value))


def price_from_litellm(entry: Mapping[str, Any]) -> Price | None:
    """A price from one entry of litellm's model price map, or None if it has no token price."""
    input_usd = _usd_per_token(entry, "input_cost_per_token")
    output_usd = _usd_per_token(entry, "output_cost_per_token")
    if input_usd is None and output_usd is None:
        return None
    input_pico = _to_pico(input_usd or Decimal(0), _PICO_PER_USD)
    cache_read = _usd_per_token(entry, "cache_read_input_token_cost")
    cache_write = _usd_per_token(entry, "cache_creation_input_token_cost")
    max_output = entry.get("max_output_tokens")
    return Price(
        input_pico=input_pico,
        output_pico=_to_pico(output_usd or Decimal(0), _PICO_PER_USD),
        cache_read_pico=input_pico if cache_read is None else _to_pico(cache_read, _PICO_PER_USD),
        cache_write_pico=input_pico
        if cache_write is None
        else _to_pico(cache_write, _PICO_PER_USD),
        max_output_tokens=max_output if isinstance(max_output, int) and max_output > 0 else None,
    )


def cost_micros(usage: Usage, price: Price) -> int:
    """The cost of one call in micro-dollars, rounded up once (see the module rules)."""
    pico = (
        usage.input_tokens * price.input_pico
        + usage.output_tokens * price.output_pico
        + usage.cache_read_tokens * price.cache_read_pico
        + usage.cache_write_tokens * price.cache_write_pico
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
