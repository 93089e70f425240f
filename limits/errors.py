"""The exceptions of ``limits``. An over-limit result is a value (``Denied``), never an exception.

    LimitsError
    ├── ConfigError          bad configuration; raised at start-up only
    ├── UnknownPrice         no price for a model (the proxy answers 400 model_not_priced)
    ├── NotFound             an admin operation named a user, group, key or override that is absent
    ├── AlreadyExists        an admin operation would duplicate a unique name
    ├── InvalidValue         an admin operation got a value outside its domain (names the field)
    └── StoreError           a storage adapter failed; no driver exception leaves limits/store/
        ├── StoreUnavailable the store cannot be reached
        └── StoreTimeout     the store did not answer in time

Errors carry hints (the model, the field), never HTTP statuses: the caller picks the status.
"""

from __future__ import annotations

import json

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "InvalidValue",
    "LimitsError",
    "NotFound",
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "UnknownPrice",
]


class LimitsError(Exception):
    """Base of every error raised by ``limits``."""


class ConfigError(LimitsError):
    """Configuration that cannot work; raised while starting up."""


class UnknownPrice(LimitsError):
    """No price is known for ``model`` (nor for the model the upstream reported)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no price is known for model {model!r}; add [prices.{json.dumps(model)}] with input"
            ' and output USD per million tokens to the config, or set unpriced_models = "allow"'
        )
        self.model = model


class NotFound(LimitsError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name


class AlreadyExists(LimitsError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} already exists")
        self.kind = kind
        self.name = name


class InvalidValue(LimitsError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class StoreError(LimitsError):
    """A storage adapter failed."""


class StoreUnavailable(StoreError):
    """The store could not be reached."""


class StoreTimeout(StoreError):
    """The store did not answer in time."""
