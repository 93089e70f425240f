"""Real agents against the proxy and the fake upstream, on loopback only: Claude Code
(``claude -p``) and Codex CLI (``codex exec``), each charged exactly. Skipped unless the binary
is on PATH (``npm i -g @anthropic-ai/claude-code @openai/codex``).

Each agent runs with its own empty home and configuration, with telemetry, updates and other
non-essential traffic switched off; the models are pinned to names the proxy prices.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from limits import PriceTable
from tests.proxy.compat import (
    CLAUDE_CALL_MICROS,
    TEST_MODEL_CALL_MICROS,
    compat_price_table,
    origin,
    start_compat,
)
from tests.proxy.conftest import Proxy, StartProxy
from tests.proxy.fake_upstream import TEXT, FakeUpstream

pytestmark = pytest.mark.slow

_AGENT_TIMEOUT_S = 120
_QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}


@pytest.fixture(scope="module")
def price_table() -> PriceTable:
    return compat_price_table()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not on PATH")
    return path


async def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run an agent to its end; its stdout. Fails on a non-zero exit status."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd / "home")}
    (cwd / "home").mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=base | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), _AGENT_TIMEOUT_S)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@pytest.mark.parametrize("key_variable", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
async def test_claude_code_print_mode(
    start_proxy: StartProxy, upstream: FakeUpstream, tmp_path: Path, key_variable: str
) -> None:
    claude = _binary("claude")
    proxy = await start_compat(start_proxy, upstream)
    env = _QUIET | {
        "ANTHROPIC_BASE_URL": origin(proxy),
        key_variable: proxy.key,
        "ANTHROPIC_MODEL": "claude-test",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude-test",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-test",
    }
    assert TEXT in await _run([claude, "-p", "hi"], env, tmp_path)
    messages = [seen for seen in upstream.seen if seen.path == "/v1/messages"]
    assert messages
    assert {seen.query_string for seen in messages} == {"beta=true"}
    rows = await proxy.rows()
    assert {(r["endpoint"], r["cost_micros"], r["estimated"]) for r in rows} == {
        ("/v1/messages", CLAUDE_CALL_MICROS, 0)
    }
    assert await proxy.spent() == CLAUDE_CALL_MICROS * len(rows)


def _codex_home(tmp_path: Path, proxy: Proxy) -> Path:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "test-model"\nmodel_provider = "spend-proxy"\n\n'
        "[model_providers.spend-proxy]\n"
        f'name = "spend-proxy"\nbase_url = "{proxy.base_url}"\n'
        'env_key = "SPEND_PROXY_KEY"\nwire_api = "responses"\n'
    )
    return home


async def _codex_login(codex: str, home: Path, key: str, tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        codex,
        "login",
        "--with-api-key",
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "CODEX_HOME": str(home)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(process.communicate(key.encode()), _AGENT_TIMEOUT_S)
    assert process.returncode == 0


@pytest.mark.parametrize("provider", ["custom", "built-in"])
async def test_codex_exec(
    start_proxy: StartProxy, upstream: FakeUpstream, tmp_path: Path, provider: str
) -> None:
    """``custom``: a ``[model_providers.*]`` table with ``env_key``; ``built-in``: the openai
    provider moved with ``openai_base_url`` (it tries the WebSocket transport first: the
    proxy's 426 sends it to HTTP at once)."""
    codex = _binary("codex")
    proxy = await start_compat(start_proxy, upstream)
    args = [codex, "exec", "--skip-git-repo-check"]
    if provider == "custom":
        home = _codex_home(tmp_path, proxy)
        env = {"CODEX_HOME": str(home), "SPEND_PROXY_KEY": proxy.key}
    else:
        home = tmp_path / "codex"
        home.mkdir()
        await _codex_login(codex, home, proxy.key, tmp_path)
        env = {"CODEX_HOME": str(home)}
        args += ["-c", f'openai_base_url="{proxy.base_url}"', "-m", "test-model"]
    assert TEXT in await _run([*args, "hi"], env, tmp_path)
    rows = await proxy.rows()
    assert [(r["endpoint"], r["model"], r["cost_micros"]) for r in rows] == [
        ("/v1/responses", "test-model", TEST_MODEL_CALL_MICROS)
    ]
    if provider == "built-in":
        assert ("/v1/responses", 426) in proxy.statuses
