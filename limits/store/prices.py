"""litellm's model price map, read as a data file: litellm itself is never imported.

Rules
1. ``import litellm`` takes seconds and pulls in hundreds of modules; the proxy needs only its
   price data. The package directory is found with ``importlib.util.find_spec`` (which does not
   execute the package) and ``model_prices_and_context_window_backup.json`` is read with orjson
   (tens of milliseconds), once, at start-up.
2. The map is the data only; turning it into prices (and merging config overrides, which win) is
   ``limits.pricing.PriceTable.from_litellm``'s job.
3. A missing package or file, or a file that is not a JSON object, is a ``ConfigError``: without
   prices the proxy cannot charge, so it must not start.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from limits.errors import ConfigError
from limits.pricing import Price, PriceTable

__all__ = ["PRICE_FILE", "litellm_price_file", "load_price_map", "load_price_table"]

PRICE_FILE = "model_prices_and_context_window_backup.json"


def litellm_price_file() -> Path:
    """Where the installed litellm keeps its price map. Raises ``ConfigError`` if absent."""
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / PRICE_FILE
        if path.is_file():
            return path
    raise ConfigError(f"litellm's price map ({PRICE_FILE}) was not found: is litellm installed?")


def load_price_map(path: Path | None = None) -> dict[str, Any]:
    """The raw price map (model name -> entry). Raises ``ConfigError`` (rule 3)."""
    path = litellm_price_file() if path is None else path
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the price map {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the price map {path} is not a JSON object")
    return data


def load_price_table(
    overrides: Mapping[str, Price] | None = None, path: Path | None = None
) -> PriceTable:
    """litellm's prices under the given overrides. Raises ``ConfigError`` (rule 3)."""
    return PriceTable.from_litellm(load_price_map(path), overrides)
