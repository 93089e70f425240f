"""Configuration: one TOML file plus ``SPEND_PROXY_*`` environment overrides (SPEC §7).

Rules
1. This is the only module that reads the environment or the config file.
2. Precedence: init arguments (tests, CLI flags) > environment > TOML file > defaults.
   Nested keys use ``__`` in the environment (``SPEND_PROXY_STORAGE__REDIS_URL``); an upstream
   key is ``SPEND_PROXY_UPSTREAMS__<NAME>__API_KEY``.
3. Unknown keys are an error at start-up that names the key (``extra="forbid"`` everywhere).
4. ``config.example.toml`` mirrors this module; a test loads it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "EnforcementSettings",
    "PriceSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "UpstreamSettings",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path("spend-proxy.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=256)
    shutdown_timeout_s: float = Field(30.0, gt=0)


class StorageSettings(_Section):
    database_url: str | None = None  # None: embedded SQLite file at sqlite_path
    sqlite_path: str = "spend-proxy.db"
    redis_url: str | None = None  # None: in-process counters (single process only)
    refresh_interval_s: float = Field(10.0, gt=0)
    ledger_flush_interval_s: float = Field(0.5, gt=0)
    ledger_batch_size: int = Field(500, ge=1)
    ledger_queue_max: int = Field(10_000, ge=1)
    spool_path: str = "spend-proxy.spool"
    cache_poll_interval_s: float = Field(1.0, gt=0)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def embedded(self) -> bool:
        return self.redis_url is None


class EnforcementSettings(_Section):
    mode: Literal["check", "reserve"] = "check"
    on_store_error: Literal["allow", "deny"] = "allow"
    reservation_ttl_s: float = Field(600.0, gt=0)
    max_estimate_output_tokens: int = Field(32_768, ge=1)
    spent_cache_s: float = Field(0.05, ge=0, le=10)  # limits/spent_cache.py; 0: no cache


class UpstreamSettings(_Section):
    provider: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key: SecretStr = SecretStr("")
    models: list[str] = Field(default_factory=lambda: ["*"])
    rename: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class PriceSettings(_Section):
    """USD per million tokens."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_read: Decimal | None = Field(None, ge=0)
    cache_write: Decimal | None = Field(None, ge=0)
    max_output_tokens: int | None = Field(None, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPEND_PROXY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    admin_token: SecretStr = SecretStr("")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)
    unpriced_models: Literal["deny", "allow"] = "deny"
    passthrough_paths: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"  # proxy/logs.py

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    enforcement: EnforcementSettings = EnforcementSettings()
    upstreams: dict[str, UpstreamSettings] = Field(default_factory=dict)
    prices: dict[str, PriceSettings] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file comes from model_config["toml_file"], set per call by load_settings.
        toml = TomlConfigSettingsSource(settings_cls)
        return (init_settings, env_settings, toml)


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` once from ``path`` (or ``spend-proxy.toml`` if it exists), the
    environment and ``overrides``. Raises ``FileNotFoundError`` for a named file that is missing
    and ``pydantic.ValidationError`` (naming the key) for bad or unknown keys."""
    if path is None:
        resolved: Path | None = DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
    else:
        resolved = Path(path)
        if not resolved.is_file():
            raise FileNotFoundError(f"config file not found: {resolved}")
    file_settings = type(
        "Settings", (Settings,), {"model_config": SettingsConfigDict(toml_file=resolved)}
    )
    settings: Settings = file_settings(**overrides)
    return settings
