"""``serve``: the worker check, and a real process that drains in-flight calls on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
from pytest_aiohttp import AiohttpServer

from limits import ConfigError
from limits.store.sql import SqlStore
from proxy.cli import main
from proxy.server import check_workers
from proxy.settings import ServerSettings, Settings, StorageSettings
from tests.conftest import FakeClock
from tests.proxy.conftest import seed
from tests.proxy.fake_upstream import FakeUpstream


def test_embedded_storage_refuses_several_workers() -> None:
    embedded = Settings(server=ServerSettings(workers=2))
    with pytest.raises(ConfigError, match="needs shared storage"):
        check_workers(embedded)
    shared = Settings(
        server=ServerSettings(workers=4),
        storage=StorageSettings(database_url="postgresql://db/x", redis_url="redis://r"),
    )
    check_workers(shared)
    check_workers(Settings())


def test_cli_prints_the_worker_refusal_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nworkers = 2\n")
    assert main(["serve", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spend-proxy: error: server.workers = 2 needs shared storage")
    assert "\n" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(150):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the proxy did not become healthy")


async def _configure(tmp_path: Path, upstream_url: str, clock: FakeClock) -> tuple[Path, str, int]:
    """A config file and a seeded SQLite file: ``(config path, alice's key, port)``."""
    db = tmp_path / "spend.db"
    store = await SqlStore.connect(f"sqlite:///{db}")
    await store.migrate()
    key, _ = await seed(store, clock)
    await store.close()
    port = _free_port()
    config = tmp_path / "spend-proxy.toml"
    config.write_text(
        f'[server]\nport = {port}\nshutdown_timeout_s = 10\n[storage]\nsqlite_path = "{db}"\n'
        f'spool_path = "{tmp_path / "spool"}"\n'
        f'[upstreams.fake]\nbase_url = "{upstream_url}"\nmodels = ["gpt-4o-mini"]\n'
    )
    return config, key, port


@pytest.mark.slow
async def test_sigterm_lets_the_in_flight_stream_finish_and_flushes_the_ledger(
    tmp_path: Path, aiohttp_server: AiohttpServer, clock: FakeClock
) -> None:
    fake = FakeUpstream(chunk_delay_s=0.15)
    server = await aiohttp_server(fake.app())
    config, key, port = await _configure(tmp_path, str(server.make_url("/v1")), clock)
    db = tmp_path / "spend.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config), cwd=tmp_path
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_healthy(base + "/healthz")
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                base + "/v1/chat/completions",
                data=orjson.dumps({**body, "stream": True}),
                headers={"Authorization": f"Bearer {key}"},
            ) as response,
        ):
            assert response.status == 200
            first = await response.content.readuntil(b"\n\n")
            process.send_signal(signal.SIGTERM)
            rest = await response.read()
        assert (first + rest).endswith(b"data: [DONE]\n\n")  # finished, not cut
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT model, estimated, cost_micros FROM ledger").fetchall()
    assert rows == [("gpt-4o-mini", 0, 44)]
