"""spend-proxy's spend-limit domain: money, periods, limit resolution, pricing, decisions,
and the storage ports and adapters (``limits.store``). Never imports ``proxy`` or aiohttp."""

from limits.decisions import Allowed, Decision, Denied, decide
from limits.errors import (
    AlreadyExists,
    ConfigError,
    InvalidValue,
    LimitsError,
    NotFound,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
    UnknownPrice,
)
from limits.money import Micros, format_usd, parse_usd
from limits.periods import Period, PeriodKind, bounds
from limits.pricing import Price, PriceTable, cost_micros
from limits.scopes import LimitConfig, Resolution, Source, resolve
from limits.status import SpendStatus
from limits.usage import Usage

__all__ = [
    "Allowed",
    "AlreadyExists",
    "ConfigError",
    "Decision",
    "Denied",
    "InvalidValue",
    "LimitConfig",
    "LimitsError",
    "Micros",
    "NotFound",
    "Period",
    "PeriodKind",
    "Price",
    "PriceTable",
    "Resolution",
    "Source",
    "SpendStatus",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "UnknownPrice",
    "Usage",
    "bounds",
    "cost_micros",
    "decide",
    "format_usd",
    "parse_usd",
    "resolve",
]
