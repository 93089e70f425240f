"""Several upstreams: routing by exact name, then globs in config order, within each API family;
an upstream key per upstream (from the environment too); renames; per-upstream timeouts; 404
``model_not_found`` when nothing (or only the other family) serves a model; ``/v1/models``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from pytest_aiohttp import AiohttpServer

from limits import PriceTable
from proxy.routing import Provider, Router
from proxy.settings import UpstreamSettings, load_settings
from tests.proxy.compat import (
    ANTHROPIC_KEY,
    OPENAI_MODELS,
    PRICES,
    TEST_MODEL_CALL_MICROS,
    anthropic_upstream,
    compat_price_table,
    start_compat,
)
from tests.proxy.conftest import UPSTREAM_KEY, Proxy, StartProxy
from tests.proxy.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
SECOND_KEY = "sk-second-from-env"


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


@pytest.fixture
async def second(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/v1"))
    yield fake
    fake.released.set()


async def _chat(proxy: Proxy, model: str) -> tuple[int, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with proxy.client.post(CHAT, json=body, headers=proxy.auth()) as response:
        return response.status, await response.json()


def _config(tmp_path: Path, first: FakeUpstream, second: FakeUpstream) -> Path:
    """Two OpenAI-style upstreams whose globs overlap; the second's key is not in the file."""
    path = tmp_path / "spend-proxy.toml"
    path.write_text(
        f'[upstreams.openai]\nbase_url = "{first.url}"\napi_key = "{UPSTREAM_KEY}"\n'
        'models = ["test-model", "gpt-*"]\n'
        f'[upstreams.second]\nbase_url = "{second.url}"\n'
        'models = ["gpt-4o", "gpt-4*", "fast", "cheap"]\ntimeout_s = 0.3\n'
        'rename = {fast = "test-model", cheap = "gpt-4o-mini"}\n'
    )
    return path


async def _two_upstreams(
    start_proxy: StartProxy,
    tmp_path: Path,
    upstream: FakeUpstream,
    second: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> Proxy:
    """A proxy on ``_config``, the second key from ``SPEND_PROXY_UPSTREAMS__SECOND__API_KEY``."""
    monkeypatch.setenv("SPEND_PROXY_UPSTREAMS__SECOND__API_KEY", SECOND_KEY)
    loaded = load_settings(_config(tmp_path, upstream, second))
    monkeypatch.delenv("SPEND_PROXY_UPSTREAMS__SECOND__API_KEY")
    assert list(loaded.upstreams) == ["openai", "second"]  # the file's order
    upstreams = {
        name: {**up.model_dump(), "api_key": up.api_key.get_secret_value()}
        for name, up in loaded.upstreams.items()
    }
    assert upstreams["second"]["api_key"] == SECOND_KEY
    return await start_proxy(upstreams=upstreams, prices=PRICES)


async def test_exact_names_then_globs_in_config_order_each_with_its_key(
    start_proxy: StartProxy,
    tmp_path: Path,
    upstream: FakeUpstream,
    second: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = await _two_upstreams(start_proxy, tmp_path, upstream, second, monkeypatch)
    for model in ("gpt-4o", "gpt-4.1", "test-model", "gpt-4o-mini"):
        assert (await _chat(proxy, model))[0] == 200
    # gpt-4o: an exact name of "second" beats the earlier glob gpt-*; gpt-4.1 and gpt-4o-mini
    # match both upstreams' globs: the first in config order wins
    assert [seen.json["model"] for seen in upstream.seen] == [
        "gpt-4.1",
        "test-model",
        "gpt-4o-mini",
    ]
    assert [seen.json["model"] for seen in second.seen] == ["gpt-4o"]
    assert {seen.headers["Authorization"] for seen in upstream.seen} == {f"Bearer {UPSTREAM_KEY}"}
    assert second.seen[0].headers["Authorization"] == f"Bearer {SECOND_KEY}"
    rows = await proxy.rows()
    assert sorted((r["model"], r["upstream"]) for r in rows) == [
        ("gpt-4.1", "openai"),
        ("gpt-4o", "second"),
        ("gpt-4o-mini", "openai"),
        ("test-model", "openai"),
    ]


async def test_a_rename_reaches_the_upstream_and_the_ledger_keeps_the_clients_name(
    start_proxy: StartProxy,
    tmp_path: Path,
    upstream: FakeUpstream,
    second: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = await _two_upstreams(start_proxy, tmp_path, upstream, second, monkeypatch)
    assert (await _chat(proxy, "fast"))[0] == 200
    assert (await _chat(proxy, "cheap"))[0] == 200
    assert [seen.json["model"] for seen in second.seen] == ["test-model", "gpt-4o-mini"]
    rows = await proxy.rows()
    # "fast" has no price: it is priced as the model the upstream reports (test-model's
    # override). "cheap" has an override, and the reported gpt-4o-mini only litellm's price:
    # the override wins (SPEC §3 order), 100 * 10 + 50 * 10.
    assert sorted((r["model"], r["upstream"], r["cost_micros"]) for r in rows) == [
        ("cheap", "second", 1500),
        ("fast", "second", TEST_MODEL_CALL_MICROS),
    ]


async def test_timeouts_are_per_upstream(
    start_proxy: StartProxy,
    tmp_path: Path,
    upstream: FakeUpstream,
    second: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = await _two_upstreams(start_proxy, tmp_path, upstream, second, monkeypatch)
    second.hang = True  # "second" allows 0.3 s, "openai" the default 600 s
    slow = asyncio.create_task(_chat(proxy, "gpt-4o"))
    assert (await _chat(proxy, "test-model"))[0] == 200
    status, body = await slow
    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    assert body["error"]["message"] == "The upstream 'second' did not answer in time."
    assert [r["model"] for r in await proxy.rows()] == ["test-model"]  # the 504 is not charged


async def test_404_model_not_found_when_no_upstream_matches(
    start_proxy: StartProxy,
    tmp_path: Path,
    upstream: FakeUpstream,
    second: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = await _two_upstreams(start_proxy, tmp_path, upstream, second, monkeypatch)
    status, body = await _chat(proxy, "claude-3-opus")
    assert status == 404
    assert body == {
        "error": {
            "message": "The model 'claude-3-opus' is not served by this proxy.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert upstream.seen == second.seen == []
    assert await proxy.ledger() == (0, 0)


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (CHAT, {"messages": []}),
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/responses", {"input": "hi"}),
        ("/v1/embeddings", {"input": "hi"}),
    ],
)
async def test_an_anthropic_model_on_an_openai_path_is_404_naming_the_right_path(
    start_proxy: StartProxy, upstream: FakeUpstream, path: str, extra: dict[str, Any]
) -> None:
    proxy = await start_compat(start_proxy, upstream)
    body = orjson.dumps({"model": "claude-test", **extra})
    async with proxy.client.post(path, data=body, headers=proxy.auth()) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_found",
        "model",
    )
    assert error["message"] == (
        "The model 'claude-test' is served by the upstream 'anthropic' (provider 'anthropic'), "
        f"which {path} does not reach: the proxy does not translate between API formats. "
        "Call it on POST /v1/messages (the Anthropic Messages API)."
    )
    assert upstream.seen == []
    assert await proxy.ledger() == (0, 0)


async def test_each_family_routes_among_its_own_upstreams(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    """A catch-all OpenAI-style upstream listed first does not capture /v1/messages."""
    proxy = await start_compat(
        start_proxy, upstream, upstreams={"openai": {"models": ["*"]}}, unpriced_models="allow"
    )
    body = {"model": "claude-test", "max_tokens": 8, "messages": []}
    async with proxy.client.post("/v1/messages", json=body, headers=proxy.auth()) as r:
        assert r.status == 200
    assert (await _chat(proxy, "claude-test"))[0] == 200  # "*" serves it on the OpenAI path
    assert upstream.seen[0].headers["x-api-key"] == ANTHROPIC_KEY
    assert upstream.seen[1].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    rows = await proxy.rows()
    assert sorted((r["endpoint"], r["upstream"]) for r in rows) == [
        (CHAT, "openai"),
        ("/v1/messages", "anthropic"),
    ]


async def test_openai_models_list_shows_the_openai_family_by_exact_name(
    start_proxy: StartProxy, upstream: FakeUpstream
) -> None:
    anthropic = anthropic_upstream(upstream, models=["claude-test", "claude-*"])
    openai_up = {"models": [*OPENAI_MODELS, "gpt-5*"]}
    proxy = await start_compat(
        start_proxy, upstream, upstreams={"openai": openai_up, "anthropic": anthropic}
    )
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=proxy.key) as client:
        listed = [model async for model in client.models.list()]
        one = await client.models.retrieve("gpt-5-mini")  # routed by a glob
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("claude-test")  # the Anthropic family's
    assert [(m.id, m.owned_by) for m in listed] == [(name, "openai") for name in OPENAI_MODELS]
    assert (one.id, one.owned_by) == ("gpt-5-mini", "openai")


def test_router_routes_per_family_and_defaults_to_the_first_upstream() -> None:
    router = Router(
        {
            "oa": UpstreamSettings(base_url="http://a/v1", models=["*"]),
            "an": UpstreamSettings(
                provider="anthropic", base_url="http://b", models=["claude-*", "claude-x"]
            ),
        }
    )

    def upstream_of(model: str, provider: Provider | None = None) -> str | None:
        route = router.route(model, provider)
        return None if route is None else route.upstream

    assert upstream_of("claude-x", "anthropic") == "an"
    assert upstream_of("claude-x", "openai") == "oa"  # its own family's catch-all
    assert upstream_of("claude-x") == "an"  # all families: an exact name beats every glob
    assert upstream_of("gpt-4o", "anthropic") is None
    default = router.default()
    assert default is not None
    assert (default.upstream, default.upstream_model) == ("oa", "")
    assert router.listed_models("anthropic") == [("claude-x", "an")]
    assert router.listed_models("openai") == []
    assert Router({}).default() is None
