"""The composition root: restart survival, probes, and the example configuration."""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel

from proxy.app import create_app
from proxy.settings import (
    EnforcementSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    UpstreamSettings,
    load_settings,
)
from tests.proxy.conftest import Proxy, StartProxy, start_with_flaky_directory

ROOT = Path(__file__).resolve().parents[2]
BODY = orjson.dumps({"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})


async def _call(proxy: Proxy) -> int:
    async with proxy.client.post("/v1/chat/completions", data=BODY, headers=proxy.auth()) as r:
        return r.status


async def test_spend_and_keys_survive_a_restart_of_the_embedded_app(
    start_proxy: StartProxy,
) -> None:
    first = await start_proxy()
    assert [await _call(first), await _call(first)] == [200, 200]
    await first.client.close()  # graceful stop: the recorder drains into the SQLite ledger
    second = await start_proxy()  # a new create_app on the same file, new in-process counters
    assert second.app is not first.app
    assert await second.spent() == 380  # counters rebuilt from the ledger at start
    assert await _call(second) == 200  # the key still works
    assert await second.spent() == 570
    assert await second.ledger() == (570, 3)


async def test_healthz_and_readyz(start_proxy: StartProxy) -> None:
    proxy, flaky = await start_with_flaky_directory(start_proxy)
    async with proxy.client.get("/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with proxy.client.get("/readyz") as response:
        ready = {"status": "ok", "checks": {"counters": "ok", "database": "ok"}}
        assert (response.status, await response.json()) == (200, ready)
    flaky.down = True
    async with proxy.client.get("/readyz") as response:
        assert response.status == 503
        checks = {"counters": "ok", "database": "unavailable"}
        assert await response.json() == {"status": "unavailable", "checks": checks}
    async with proxy.client.get("/healthz") as response:
        assert response.status == 200


def test_example_config_loads_and_documents_every_key() -> None:
    path = ROOT / "config.example.toml"
    settings = load_settings(path)
    assert settings.storage.embedded
    assert settings.storage.database_url is None
    assert settings.server == ServerSettings()
    assert settings.storage == StorageSettings()
    upstream = settings.upstreams["openai"]
    assert upstream.base_url == "https://api.openai.com/v1"
    assert upstream.models == ["gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"]
    text = path.read_text()
    sections: list[type[BaseModel]] = [Settings, ServerSettings, StorageSettings]
    sections += [EnforcementSettings, UpstreamSettings]
    names = {name for section in sections for name in section.model_fields}
    names |= {"input", "output", "cache_read", "cache_write", "max_output_tokens"}
    missing = [n for n in sorted(names) if f"{n} =" not in text and f"[{n}" not in text]
    assert missing == []


def test_create_app_has_no_side_effects_until_started(tmp_path: Path) -> None:
    settings = Settings(storage=StorageSettings(sqlite_path=str(tmp_path / "x.db")))
    app = create_app(settings)
    assert not (tmp_path / "x.db").exists()  # stores open in cleanup_ctx, not here
    assert len(app.cleanup_ctx) == 3
